"""The public listener's per-address request rate limit: over real sockets (httpx), and RequestLimiter's bookkeeping."""
from __future__ import annotations

import ipaddress
from pathlib import Path
from typing import Any, AsyncIterator

import httpx
import pytest

from tests.helpers import eventually
from tests.web.conftest import WebEnv, envelope, start_env, stop_env
from thirdparty.confload import ConfigError
from thirdparty.rate_limit import RequestLimiter
from web.config import load

TOO_MANY = {"ret": 65534, "msg": "too many requests"}


async def limited_env(rate: float, burst: int) -> WebEnv:
    """A web node whose rate limit applies to loopback too (the exempt list emptied)."""
    return await start_env(limits={"public_rate_per_addr": rate, "public_burst_per_addr": burst,
                                   "rate_limit_exempt": []})


@pytest.fixture
async def slow_env() -> AsyncIterator[WebEnv]:
    """Bursts of 3, then one request per 5 s: a test's few requests never see a token come back."""
    web = await limited_env(0.2, 3)
    try:
        yield web
    finally:
        await stop_env(web)


async def test_a_burst_then_429_with_retry_after_and_the_envelope(slow_env: WebEnv) -> None:
    for _ in range(3):
        assert (await slow_env.public.get("/1/time/get")).status_code == 200
    response = await slow_env.public.get("/1/time/get", params={"cb": "jsonp_cb"})  # never JSONP
    assert response.status_code == 429
    assert envelope(response) == TOO_MANY
    assert 1 <= int(response.headers["retry-after"]) <= 5
    assert response.headers["cache-control"] == "no-store"
    for path in ("/server/get", "/1/msg/get", "/no/such/path"):  # every path of the listener is limited
        assert (await slow_env.public.get(path, params={"key": "a", "k": "a", "m": "0"})).status_code == 429


async def test_a_flood_of_429s_is_one_access_log_line_per_interval(slow_env: WebEnv,
                                                                    caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level("INFO", logger="web.access.public"):
        for _ in range(3):
            assert (await slow_env.public.get("/1/time/get")).status_code == 200
        for _ in range(20):
            assert (await slow_env.public.get("/1/time/get")).status_code == 429
    limited = [r.getMessage() for r in caplog.records if r.name == "web.access.public" and " 429 " in r.getMessage()]
    assert len(limited) == 1 and "not logged" not in limited[0]
    response = await slow_env.admin.get("/stat", headers={"Authorization": f"Bearer {slow_env.config.admin.token}"}
                                        if slow_env.config.admin.token else {})
    assert envelope(response)["data"]["public"]["refusals"]["rate_limited"] == 20   # every refusal still counted


async def test_another_address_is_unaffected(slow_env: WebEnv) -> None:
    while (await slow_env.public.get("/time/get")).status_code == 200:
        pass
    other = httpx.AsyncClient(base_url=str(slow_env.public.base_url), timeout=5.0,
                              transport=httpx.AsyncHTTPTransport(local_address="127.0.0.2"))
    async with other:
        for _ in range(3):
            reply = await other.get("/1/time/get")
            assert reply.status_code == 200 and reply.json()["ret"] == 0
    assert (await slow_env.public.get("/time/get")).status_code == 429


async def test_the_admin_listener_is_not_limited(slow_env: WebEnv) -> None:
    key = slow_env.key_on("node1")
    for _ in range(10):
        response = await slow_env.admin.post("/push/private", params={"key": key, "expire": "60"}, content=b"{}")
        assert response.status_code == 200 and response.json()["ret"] == 0


async def test_refill_lets_requests_through_again() -> None:
    web = await limited_env(4.0, 2)
    try:
        for _ in range(50):   # bounded: the bucket (2 tokens, +1 per 250 ms) empties within a few requests
            if (await web.public.get("/1/time/get")).status_code == 429:
                break
        else:
            raise AssertionError("never limited")

        async def admitted() -> bool:
            return (await web.public.get("/1/time/get")).status_code == 200

        await eventually(admitted, timeout=5.0)
    finally:
        await stop_env(web)


async def test_a_zero_rate_turns_the_limit_off() -> None:
    web = await limited_env(0.0, 0)
    try:
        for _ in range(30):
            assert (await web.public.get("/1/time/get")).status_code == 200
    finally:
        await stop_env(web)


async def test_loopback_is_exempt_by_default() -> None:
    web = await start_env(limits={"public_rate_per_addr": 0.2, "public_burst_per_addr": 1})
    try:
        for _ in range(5):
            assert (await web.public.get("/1/time/get")).status_code == 200
    finally:
        await stop_env(web)


# --- config --------------------------------------------------------------------------------------------------

def test_defaults_and_shipped_conf() -> None:
    limits = load(str(Path(__file__).resolve().parents[2] / "conf" / "web.conf")).limits
    assert (limits.public_rate_per_addr, limits.public_burst_per_addr, limits.public_rate_max_addrs) == \
        (20.0, 100, 100_000)
    assert limits.rate_limit_exempt == ["127.0.0.0/8", "::1/128"]


@pytest.mark.parametrize("limits,needle", [
    ({"public_rate_per_addr": -1.0}, "public_rate_per_addr"),
    ({"public_burst_per_addr": -5}, "public_burst_per_addr"),
    ({"public_rate_per_addr": 10.0, "public_burst_per_addr": 0}, "public_burst_per_addr"),
    ({"public_rate_max_addrs": 0}, "public_rate_max_addrs"),
    ({"rate_limit_exempt": ["not-a-network"]}, "rate_limit_exempt"),
])
def test_bad_limits_are_refused(limits: dict[str, Any], needle: str) -> None:
    with pytest.raises(ConfigError, match=needle):
        load(None, {"limits": limits})


# --- RequestLimiter (pure: the caller's clock) ---------------------------------------------------------------

def test_a_refusal_takes_no_token_and_says_when_to_retry() -> None:
    limiter = RequestLimiter(rate=2.0, burst=2)
    assert limiter.admit("10.0.0.1", 0.0) == 0.0 and limiter.admit("10.0.0.1", 0.0) == 0.0
    assert limiter.admit("10.0.0.1", 0.0) == pytest.approx(0.5)
    assert limiter.admit("10.0.0.1", 0.25) == pytest.approx(0.25)   # refused requests do not push it back
    assert limiter.admit("10.0.0.1", 0.5) == 0.0


def test_ipv6_addresses_share_a_bucket_per_64() -> None:
    limiter = RequestLimiter(rate=1.0, burst=1)
    assert limiter.admit("2001:db8:1:2::1", 0.0) == 0.0
    assert limiter.admit("2001:db8:1:2::ffff", 0.0) > 0.0
    assert limiter.admit("2001:db8:1:3::1", 0.0) == 0.0
    assert len(limiter) == 2


def test_exempt_addresses_are_neither_limited_nor_tracked() -> None:
    limiter = RequestLimiter(rate=1.0, burst=1, exempt=[ipaddress.ip_network("127.0.0.0/8")])
    assert all(limiter.admit("127.0.0.5", 0.0) == 0.0 for _ in range(5))
    assert len(limiter) == 0


def test_idle_addresses_are_forgotten_once_refilled() -> None:
    limiter = RequestLimiter(rate=1.0, burst=2)   # one request: refilled 1 s later; swept every 2 s
    for i in range(50):
        limiter.admit(f"10.0.1.{i}", 0.0)
    assert len(limiter) == 50
    limiter.admit("10.0.2.1", 1.5)      # no sweep yet
    assert len(limiter) == 51
    limiter.admit("10.0.2.2", 2.0)      # the sweep forgets the 50 refilled ones, keeps 10.0.2.1 (refilling)
    assert len(limiter) == 2


def test_past_the_table_cap_new_addresses_go_unlimited_and_are_counted() -> None:
    limiter = RequestLimiter(rate=1.0, burst=1, max_tracked=2)
    assert limiter.admit("10.0.0.1", 0.0) == 0.0 and limiter.admit("10.0.0.2", 0.0) == 0.0
    assert [limiter.admit("10.0.0.3", 0.0) for _ in range(3)] == [0.0, 0.0, 0.0]
    assert limiter.untracked == 3 and len(limiter) == 2
    assert limiter.admit("10.0.0.1", 0.0) > 0.0       # the tracked ones stay limited
    assert limiter.admit("10.0.0.3", 2.5) == 0.0      # after a sweep there is room again
    assert limiter.admit("10.0.0.3", 2.5) > 0.0
    assert limiter.untracked == 3
