"""GET /stat on the web node's admin listener: the token, requests by listener, refusals by reason, uptime."""
from __future__ import annotations

from typing import Any, AsyncIterator

import pytest

from tests.web.conftest import WebEnv, envelope, start_env, stop_env

TOKEN = "stat-test-token"
AUTH = {"Authorization": f"Bearer {TOKEN}"}


@pytest.fixture
async def env() -> AsyncIterator[WebEnv]:
    web = await start_env(admin={"token": TOKEN},
                          limits={"public_rate_per_addr": 0.2, "public_burst_per_addr": 20, "rate_limit_exempt": []})
    try:
        yield web
    finally:
        await stop_env(web)


async def stat(env: WebEnv) -> Any:
    response = await env.admin.get("/stat", headers=AUTH)
    assert response.status_code == 200, response.text
    reply = envelope(response)
    assert reply["ret"] == 0 and reply["msg"] == "ok"
    return reply["data"]


async def test_stat_needs_the_admin_token(env: WebEnv) -> None:
    for headers in ({}, {"Authorization": "Bearer wrong"}):
        response = await env.admin.get("/stat", headers=headers)
        assert response.status_code == 401
        assert envelope(response) == {"ret": 65534, "msg": "unauthorized"}
    assert (await env.admin.post("/stat", headers=AUTH)).status_code == 405
    data = await stat(env)
    assert data["admin"]["refusals"]["unauthorized"] == 2
    assert data["admin"]["refusals"]["method_not_allowed"] == 1


async def test_a_fresh_node_counts_nothing_but_the_stat_request(env: WebEnv) -> None:
    data = await stat(env)
    assert data["uptime"] >= 0
    assert data["public"] == {"requests": 0, "refusals": {name: 0 for name in data["public"]["refusals"]}}
    assert data["admin"]["requests"] == 1
    assert set(data["public"]["refusals"]) == {"rate_limited", "unauthorized", "body_too_large", "not_found",
                                               "method_not_allowed", "param_error", "no_node", "internal_error",
                                               "http_500"}
    assert data["rate_limit"] == {"tracked_addresses": 0, "untracked_requests": 0}


async def test_refusals_are_counted_by_reason(env: WebEnv) -> None:
    await env.assert_alive()
    assert (await env.public.get("/no/such/path")).status_code == 404
    assert (await env.public.post("/1/time/get")).status_code == 405
    assert (await env.get("/1/server/get", p="1"))["ret"] == 65534                 # no key
    assert (await env.get("/1/time/get", cb="1bad"))["ret"] == 65534                # bad JSONP callback
    env.message.unreachable = True
    assert (await env.get("/1/msg/get", k="a", m="0"))["ret"] == 65535
    env.message.unreachable = False
    too_large = await env.admin.post("/push/private", params={"key": "a", "expire": "60"}, headers=AUTH,
                                     content=b"x" * 4096)                          # above 2 * max_body_bytes
    assert too_large.status_code == 400
    data = await stat(env)
    public, admin = data["public"], data["admin"]
    assert public["requests"] == 6
    assert {name: count for name, count in public["refusals"].items() if count} == \
        {"not_found": 1, "method_not_allowed": 1, "param_error": 2, "internal_error": 1}
    assert admin["refusals"]["body_too_large"] == 1
    assert data["rate_limit"]["tracked_addresses"] == 1


async def test_rate_limited_requests_are_counted(env: WebEnv) -> None:
    statuses = [(await env.public.get("/1/time/get")).status_code for _ in range(25)]
    assert statuses[:20] == [200] * 20 and 429 in statuses[20:]
    data = await stat(env)
    assert data["public"]["requests"] == 25
    assert data["public"]["refusals"]["rate_limited"] == statuses.count(429)
