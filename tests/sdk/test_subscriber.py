"""The subscriber SDK against an in-process cluster (real Redis, real sockets): live order, offline catch-up,
duplicates, gaps, comet restarts, -n, token refusal, dead connections, back-pressure."""
from __future__ import annotations

import asyncio
import json
import time
from typing import Any

import pytest

from comet.subscriber import (
    CATCHING_UP, FAILED, Gap, RetriesExhausted, Subscriber, SubscribeRefused, TokenRefused,
)
from comet.subscriber_api import Message
from comet.subscriber_logic import ReconnectPolicy
from tests.helpers import eventually, free_port
from tests.sdk.conftest import SdkCluster, collect
from thirdparty.ring import Ring
from thirdparty.sub_token import make_token

pytestmark = [pytest.mark.redis, pytest.mark.integration]

PROTOS = ["tcp", "ws"]
SECRET = "sdk-test-secret-0123456789"


def mids(messages: list[Message]) -> list[int]:
    return [message.mid for message in messages]


async def start_collecting(subscriber: Subscriber) -> tuple[list[Message], asyncio.Task[None]]:
    got: list[Message] = []
    task = asyncio.create_task(collect(subscriber, got))
    await asyncio.wait_for(subscriber.wait_live(), 5)
    return got, task


async def stop_collecting(subscriber: Subscriber, task: asyncio.Task[None]) -> None:
    await subscriber.close()
    await asyncio.wait_for(task, 5)


@pytest.mark.parametrize("proto", PROTOS)
async def test_live_messages_arrive_in_order_with_their_exact_bytes(cluster: SdkCluster, proto: str) -> None:
    subscriber = cluster.subscriber("alice", proto=proto)
    got, task = await start_collecting(subscriber)
    bodies = [{"n": n, "text": "héllo\u2028"} for n in range(20)]
    pushed = [await cluster.push_mid("alice", body) for body in bodies]
    await eventually(lambda: len(got) == 20)
    assert mids(got) == pushed
    first = got[0]
    assert (first.key, first.gid, first.fetched, first.value) == ("alice", 0, False, bodies[0])
    assert first.raw == json.dumps(bodies[0]).encode()      # what the back end sent, byte for byte
    assert subscriber.last_mid == pushed[-1] and subscriber.stats.sessions == 1
    await stop_collecting(subscriber, task)


@pytest.mark.parametrize("proto", PROTOS)
async def test_offline_period_is_fetched_without_gap_or_duplicate(cluster: SdkCluster, proto: str) -> None:
    before = [await cluster.push_mid("bob", {"n": n}) for n in range(3)]     # stored before the first start
    first = cluster.subscriber("bob", proto=proto)
    got, task = await start_collecting(first)
    await eventually(lambda: len(got) == 3)
    await stop_collecting(first, task)
    assert mids(got) == before and all(message.fetched for message in got)

    offline = [await cluster.push_mid("bob", {"n": n}) for n in range(3, 8)]
    second = cluster.subscriber("bob", proto=proto, last_mid=first.last_mid)
    resumed, task = await start_collecting(second)
    live = [await cluster.push_mid("bob", {"n": n}) for n in range(8, 10)]
    await eventually(lambda: len(resumed) == 7)
    await asyncio.sleep(0.1)   # nothing more may come
    assert mids(resumed) == offline + live
    assert [m.fetched for m in resumed] == [True] * 5 + [False] * 2
    assert [m.value["n"] for m in resumed] == list(range(3, 10))
    await stop_collecting(second, task)


async def test_fetch_repeats_until_a_reply_is_empty(cluster: SdkCluster) -> None:
    """A reply carries at most ~960 KiB: 20 messages of 60 KiB take two pages (and an empty third)."""
    pushed = [await cluster.push_mid("carol", {"n": n, "pad": "x" * 60_000}) for n in range(20)]
    subscriber = cluster.subscriber("carol")
    got, task = await start_collecting(subscriber)
    await eventually(lambda: len(got) == 20)
    assert mids(got) == pushed and subscriber.stats.fetches == 3
    await stop_collecting(subscriber, task)


async def test_a_trimmed_fetch_is_reported_as_a_gap(make_cluster: Any) -> None:
    cluster = await make_cluster(max_per_key=5)
    seen = await cluster.push_mid("dave", {"n": 0})
    pushed = [await cluster.push_mid("dave", {"n": n}) for n in range(1, 9)]   # only the 5 newest are kept
    gaps: list[Gap] = []
    subscriber = cluster.subscriber("dave", last_mid=seen, on_gap=gaps.append)
    got, task = await start_collecting(subscriber)
    await eventually(lambda: len(got) == 5)
    assert mids(got) == pushed[-5:]
    assert gaps == [Gap("dave", 0, seen, pushed[-5])] and subscriber.last_gap == gaps[0]
    assert subscriber.stats.gaps == 1
    await stop_collecting(subscriber, task)


async def test_a_message_both_live_and_fetched_is_handed_out_once(make_cluster: Any) -> None:
    """The fetch after the subscribe is held until three pushes went out live: stored, online-only (expire 0,
    never fetched), stored. The fetch then returns the two stored ones too; each message comes out once, in mid
    order, the online-only one in its place."""
    cluster = await make_cluster(proxy=("public",))
    proxy = cluster.proxies["public"]
    proxy.hold(b"GET /1/msg/get")
    subscriber = cluster.subscriber("erin")
    got: list[Message] = []
    task = asyncio.create_task(collect(subscriber, got))
    await asyncio.wait_for(proxy.held.wait(), 5)
    assert subscriber.state == CATCHING_UP
    pushed = [await cluster.push_mid("erin", {"n": 1}), await cluster.push_mid("erin", {"n": 2}, expire=0),
              await cluster.push_mid("erin", {"n": 3})]
    await eventually(lambda: subscriber.stats.live == 3)
    assert got == []                        # held back until the fetch is merged in
    proxy.release()
    await asyncio.wait_for(subscriber.wait_live(), 5)
    await eventually(lambda: len(got) == 3)
    assert mids(got) == pushed and [m.fetched for m in got] == [True, False, True]
    assert subscriber.stats.duplicates == 2
    await stop_collecting(subscriber, task)


async def test_survives_a_comet_restart_while_a_loop_pushes(cluster: SdkCluster) -> None:
    tcp, ws = cluster.subscriber("frank", proto="tcp"), cluster.subscriber("frank", proto="ws")
    (tcp_got, tcp_task), (ws_got, ws_task) = await start_collecting(tcp), await start_collecting(ws)
    acknowledged: list[int] = []
    failed: list[int] = []
    stop = asyncio.Event()

    async def push_loop() -> None:
        n = 0
        while not stop.is_set():
            n += 1
            reply = await cluster.push("frank", {"n": n})
            (acknowledged.append(reply["data"]["mid"]) if reply["ret"] == 0 else failed.append(reply["ret"]))
            await asyncio.sleep(0.01)

    loop = asyncio.create_task(push_loop())
    await eventually(lambda: len(acknowledged) >= 10)
    await cluster.stop_comet()
    await eventually(lambda: len(failed) >= 3)             # pushes fail while the comet is down
    await cluster.start_comet()
    restarted = len(acknowledged)
    await eventually(lambda: len(acknowledged) >= restarted + 10, timeout=10)
    stop.set()
    await loop
    for got in (tcp_got, ws_got):
        await eventually(lambda: len(got) >= len(acknowledged), timeout=10)
    await asyncio.sleep(0.1)
    for subscriber, got in ((tcp, tcp_got), (ws, ws_got)):
        assert mids(got) == acknowledged, subscriber.proto     # every acknowledged message, once, in order
        assert subscriber.stats.sessions >= 2
    assert set(failed) == {65535}
    await stop_collecting(tcp, tcp_task)
    await stop_collecting(ws, ws_task)


async def test_node_moved_leads_to_a_new_lookup(cluster: SdkCluster) -> None:
    """A comet that does not serve the key (a standby: empty ring) answers -n; the subscriber asks the web node
    again on every attempt and subscribes once the comet serves the key."""
    service = cluster.comet.service
    assert service is not None
    service.ring = Ring({})
    subscriber = cluster.subscriber("gina")
    await subscriber.start()
    await eventually(lambda: subscriber.stats.refusals["n"] >= 2)
    assert subscriber.stats.lookups >= subscriber.stats.refusals["n"] >= 2
    service.ring = Ring({"node1": 1})
    got, task = await start_collecting(subscriber)
    mid = await cluster.push_mid("gina", {"n": 1})
    await eventually(lambda: mids(got) == [mid])
    await stop_collecting(subscriber, task)


@pytest.mark.parametrize("proto", PROTOS)
async def test_refused_token_is_fatal_without_a_provider(make_cluster: Any, proto: str) -> None:
    cluster = await make_cluster(comet={"auth": {"secrets": [SECRET]}})
    expired = make_token(SECRET.encode(), "hank", int(time.time()) - 3600)
    subscriber = cluster.subscriber("hank", proto=proto, token=expired)
    with pytest.raises(TokenRefused, match="-a"):
        async with asyncio.timeout(5):
            async for _message in subscriber:
                pass
    assert subscriber.state == FAILED and subscriber.stats.refusals["a"] == 1
    with pytest.raises(TokenRefused):
        await subscriber.wait_closed()


async def test_token_provider_replaces_a_refused_token(make_cluster: Any) -> None:
    """The app's token expired: the subscriber asks the provider (the app's back end) for a new one."""
    cluster = await make_cluster(comet={"auth": {"secrets": [SECRET]}})
    calls: list[str] = []

    async def provider() -> str | None:
        calls.append("ivan")
        return make_token(SECRET.encode(), "ivan", int(time.time()) + 3600)

    subscriber = cluster.subscriber("ivan", token=make_token(SECRET.encode(), "ivan", 1_000_000),
                                    token_provider=provider)
    got, task = await start_collecting(subscriber)
    assert calls == ["ivan"] and subscriber.stats.refusals["a"] == 1
    mid = await cluster.push_mid("ivan", {"n": 1})
    await eventually(lambda: mids(got) == [mid])
    await stop_collecting(subscriber, task)

    first_time = cluster.subscriber("ivan", token_provider=provider)   # no token yet: asks before connecting
    await asyncio.wait_for(first_time.wait_live(), 5)
    assert calls == ["ivan", "ivan"] and first_time.stats.refusals["a"] == 0

    giving_up = cluster.subscriber("ivan", token_provider=lambda: None)   # nothing to offer: fatal
    with pytest.raises(TokenRefused, match="no new token"):
        await asyncio.wait_for(giving_up.wait_live(), 5)


async def test_a_refused_heartbeat_is_fatal(cluster: SdkCluster) -> None:
    subscriber = cluster.subscriber("jill", heartbeat=5)   # the comet wants >= 30: -p
    with pytest.raises(SubscribeRefused, match="-p"):
        await subscriber.wait_live()


async def test_a_missing_heartbeat_reply_ends_the_session(make_cluster: Any) -> None:
    """The connection goes silent without closing (frozen in a proxy): no heartbeat reply within the timeout,
    so the subscriber reconnects and fetches what was pushed meanwhile."""
    cluster = await make_cluster(limits={"min_heartbeat": 1, "heartbeat_grace": 0.5}, proxy=("tcp",))
    subscriber = cluster.subscriber("kate", heartbeat=1, heartbeat_timeout=0.3)
    got, task = await start_collecting(subscriber)
    cluster.proxies["tcp"].freeze()
    pushed = [await cluster.push_mid("kate", {"n": n}) for n in range(3)]
    await eventually(lambda: len(got) == 3, timeout=10)
    assert mids(got) == pushed and all(m.fetched for m in got)
    assert subscriber.stats.heartbeat_timeouts == 1 and subscriber.stats.sessions == 2
    await stop_collecting(subscriber, task)


async def test_a_slow_application_pauses_the_connection_without_losing_messages(cluster: SdkCluster) -> None:
    subscriber = cluster.subscriber("liam", max_pending=3)
    await asyncio.wait_for(subscriber.wait_live(), 5)
    pushed = [await cluster.push_mid("liam", {"n": n}) for n in range(12)]   # nobody takes them yet
    await eventually(lambda: subscriber.stats.overflows >= 1)
    got: list[Message] = []
    async for message in subscriber:
        got.append(message)
        await asyncio.sleep(0.01)
        if len(got) == 12:
            break
    assert mids(got) == pushed
    await subscriber.close()


async def test_callback_delivery_and_close(cluster: SdkCluster) -> None:
    got: list[Message] = []

    async def on_message(message: Message) -> None:
        got.append(message)

    states: list[str] = []
    subscriber = cluster.subscriber("mona", on_message=on_message, on_state=states.append)
    with pytest.raises(TypeError):
        subscriber.__aiter__()
    async with subscriber:
        await asyncio.wait_for(subscriber.wait_live(), 5)
        mid = await cluster.push_mid("mona", {"n": 1})
        await eventually(lambda: mids(got) == [mid])
    assert states[:3] == ["connecting", "catching_up", "live"] and states[-1] == "closed"
    await subscriber.wait_closed()          # closed cleanly: no error
    assert subscriber.state == "closed" and subscriber.last_mid == mid


async def test_gives_up_after_max_attempts() -> None:
    subscriber = Subscriber(f"http://127.0.0.1:{free_port()}", "nick",
                            reconnect=ReconnectPolicy(initial=0.01, maximum=0.02, max_attempts=3))
    try:
        with pytest.raises(RetriesExhausted, match="3 attempts.*cannot connect"):
            await subscriber.wait_closed()
        assert subscriber.stats.lookups == 3
    finally:
        await subscriber.close()
