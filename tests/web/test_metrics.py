"""GET /metrics on the web node's admin listener: the token, the Prometheus text format, requests and refusals."""
from __future__ import annotations

from typing import AsyncIterator

import pytest
from prometheus_client.exposition import CONTENT_TYPE_LATEST
from prometheus_client.parser import text_string_to_metric_families

from tests.web.conftest import WebEnv, start_env, stop_env

TOKEN = "metrics-test-token"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]


@pytest.fixture
async def env() -> AsyncIterator[WebEnv]:
    web = await start_env(admin={"token": TOKEN})
    try:
        yield web
    finally:
        await stop_env(web)


async def scrape(env: WebEnv) -> Samples:
    """Every sample: (name, sorted labels without node) -> value; checks the node label (the admin address)."""
    response = await env.admin.get("/metrics", headers=AUTH)
    assert response.status_code == 200, response.text
    assert response.headers["content-type"] == CONTENT_TYPE_LATEST
    samples: Samples = {}
    for family in text_string_to_metric_families(response.text):
        for sample in family.samples:
            labels = dict(sample.labels)
            assert labels.pop("node") == env.config.admin.bind[0], sample
            samples[(sample.name, tuple(sorted(labels.items())))] = sample.value
    return samples


def value(samples: Samples, name: str, **labels: str) -> float:
    return samples.get((name, tuple(sorted(labels.items()))), 0.0)


async def test_metrics_need_the_admin_token(env: WebEnv) -> None:
    for headers in ({}, {"Authorization": "Bearer wrong"}):
        assert (await env.admin.get("/metrics", headers=headers)).status_code == 401
    samples = await scrape(env)
    assert value(samples, "pushcluster_web_refusals_total", listener="admin", reason="unauthorized") == 2
    assert (await env.admin.post("/metrics", headers=AUTH)).status_code == 405


async def test_requests_and_refusals_move_with_traffic(env: WebEnv) -> None:
    before = await scrape(env)
    await env.assert_alive()
    assert (await env.public.get("/no/such/path")).status_code == 404
    assert (await env.get("/1/msg/get", k="a", m="0"))["ret"] == 0        # a fetch
    env.message.unreachable = True
    assert (await env.get("/1/msg/get", k="a", m="0"))["ret"] == 65535    # a fetch that fails
    after = await scrape(env)
    requests = "pushcluster_web_requests_total"
    assert value(after, requests, listener="public") == value(before, requests, listener="public") + 4
    assert value(after, requests, listener="admin") == value(before, requests, listener="admin") + 1
    refusals = "pushcluster_web_refusals_total"
    assert value(after, refusals, listener="public", reason="not_found") == 1
    assert value(after, refusals, listener="public", reason="internal_error") == 1
    assert value(after, refusals, listener="public", reason="rate_limited") == 0


async def test_a_push_is_counted_on_the_admin_listener(env: WebEnv) -> None:
    key = env.key_on("node1")
    before = await scrape(env)
    response = await env.admin.post("/push/private", params={"key": key, "expire": "60"}, content=b'{"a":1}',
                                    headers=AUTH)
    assert response.json()["ret"] == 0
    after = await scrape(env)
    requests = "pushcluster_web_requests_total"
    assert value(after, requests, listener="admin") == value(before, requests, listener="admin") + 2
    assert value(after, "pushcluster_web_start_time_seconds") > 0
    # the fake message node takes no trace records: the node runs without a tracer, so no trace metrics
    assert not any(name.startswith("pushcluster_web_trace_") for name, _ in after)
