"""Acknowledgements from the subscriber SDK against an in-process cluster (real Redis, real sockets): acks reach
the comet (its counters, the delivery trace's ``acked`` verdict), ``wait=acked`` pushes end with ``acked``, fetched
messages the connection never carried are not acknowledged, ``ack=False`` sends none; the trace methods of the
server SDK."""
from __future__ import annotations

import asyncio
from typing import Any

import pytest

from comet.subscriber import Subscriber
from comet.subscriber_api import Message
from tests.helpers import eventually
from tests.sdk.conftest import SdkCluster, collect
from web.push_client import BadParameterError, KeyTrace, MessageTrace, PushClient

pytestmark = [pytest.mark.redis, pytest.mark.integration]


def client(cluster: SdkCluster) -> PushClient:
    return PushClient(cluster.admin, public_url=cluster.public, token=cluster.admin_token or None)


def comet_acks(cluster: SdkCluster) -> tuple[int, int]:
    stats = cluster.comet.stats
    return stats.acks, stats.acks_unknown


async def live(subscriber: Subscriber) -> tuple[list[Message], asyncio.Task[None]]:
    got: list[Message] = []
    task = asyncio.create_task(collect(subscriber, got))
    await asyncio.wait_for(subscriber.wait_live(), 5)
    return got, task


async def trace_state(push: PushClient, key: str, mid: int) -> str:
    return (await push.msg_trace(key, mid)).state


async def acked(push: PushClient, key: str, mid: int) -> bool:
    return await trace_state(push, key, mid) == "acked"


@pytest.mark.parametrize("proto", ["tcp", "ws"])
async def test_taken_messages_are_acked_and_the_trace_says_acked(cluster: SdkCluster, proto: str) -> None:
    stored = await cluster.push_mid("alice", {"n": 0})            # fetched: this connection never carried it
    subscriber = cluster.subscriber("alice", proto=proto)
    got, task = await live(subscriber)
    await eventually(lambda: len(got) == 1)
    pushed = [await cluster.push_mid("alice", {"n": n}) for n in range(1, 4)]
    await eventually(lambda: len(got) == 4)
    await eventually(lambda: comet_acks(cluster) == (3, 0))      # the live ones, and no ack the comet refuses
    assert subscriber.stats.acks == 3
    async with client(cluster) as push:
        for mid in pushed:
            await eventually(lambda: acked(push, "alice", mid), timeout=5)
        trace = await push.msg_trace("alice", pushed[0])
        assert isinstance(trace, MessageTrace) and trace.mid == pushed[0] and trace.key == "alice"
        assert "acked" in [event["kind"] for event in trace.events]
        assert await trace_state(push, "alice", stored) != "acked"
    await subscriber.close()
    await task


@pytest.mark.parametrize("proto", ["tcp", "ws"])
async def test_push_waiting_for_an_ack_answers_acked(cluster: SdkCluster, proto: str) -> None:
    seen: list[int] = []
    subscriber = cluster.subscriber("bob", proto=proto, on_message=lambda message: seen.append(message.mid))
    await asyncio.wait_for(subscriber.wait_live(), 5)
    async with client(cluster) as push:
        result = await push.push_private("bob", {"n": 1}, expire=600, wait="acked", timeout=5)
        assert (result.outcome, result.online) == ("acked", 1) and seen == [result.mid]
        written = await push.push_private("bob", {"n": 2}, expire=600, wait="written")
        assert written.outcome == "written"
        offline = await push.push_private("nobody", {"n": 3}, expire=600, wait="acked", timeout=1)
        assert (offline.outcome, offline.online) == ("offline", 0)
        many = await push.push_mprivate(["bob", "nobody"], {"n": 4}, expire=600, wait="acked", timeout=5)
        assert many.failed_keys == [] and many.outcomes == {"bob": "acked", "nobody": "offline"}
        plain = await push.push_private("bob", {"n": 5}, expire=600)
        assert plain.outcome is None
        with pytest.raises(BadParameterError):
            await push.push_private("bob", {"n": 6}, expire=600, wait="acked", timeout=99999)


async def test_without_acks_a_waiting_push_times_out(cluster: SdkCluster) -> None:
    subscriber = cluster.subscriber("carol", ack=False)
    got, task = await live(subscriber)
    async with client(cluster) as push:
        result = await push.push_private("carol", {"n": 1}, expire=600, wait="acked", timeout=0.3)
    assert result.outcome == "timeout"
    await eventually(lambda: len(got) == 1)
    assert comet_acks(cluster) == (0, 0) and subscriber.stats.acks == 0
    await subscriber.close()
    await task


async def test_iterator_acks_only_what_it_handed_out(cluster: SdkCluster) -> None:
    subscriber = cluster.subscriber("dave")
    await asyncio.wait_for(subscriber.wait_live(), 5)
    pushed = [await cluster.push_mid("dave", {"n": n}) for n in range(3)]
    await eventually(lambda: subscriber.stats.live == 3)
    await asyncio.sleep(0.1)
    assert comet_acks(cluster) == (0, 0)                         # received, but nobody took them yet
    first = await asyncio.wait_for(subscriber.__anext__(), 5)
    assert first.mid == pushed[0]
    await eventually(lambda: comet_acks(cluster) == (1, 0))
    await subscriber.close()


async def test_key_trace_and_trace_errors(cluster: SdkCluster) -> None:
    subscriber = cluster.subscriber("erin")
    got, task = await live(subscriber)
    mid = await cluster.push_mid("erin", {"n": 1})
    await eventually(lambda: len(got) == 1)
    async with client(cluster) as push:
        async def traced() -> bool:
            trace = await push.key_trace("erin")
            return bool(trace.connections) and any(m.get("mid") == mid for m in trace.messages)
        await eventually(traced, timeout=5)
        trace = await push.key_trace("erin")
        assert isinstance(trace, KeyTrace) and trace.key == "erin" and trace.connections[0]["closed"] is None
        unknown = await push.msg_trace("erin", 1)
        assert (unknown.state, unknown.events) == ("unknown", [])
        with pytest.raises(BadParameterError) as local:
            await push.msg_trace("erin", 0)
        assert local.value.status == 0
        with pytest.raises(BadParameterError) as remote:
            await push.key_trace("x" * 200)
        assert remote.value.ret == 65534 and remote.value.status == 200
    await subscriber.close()
    await task


def test_subscriber_rejects_a_bad_last_pmid() -> None:
    options: dict[str, Any] = {"last_pmid": -1}
    with pytest.raises(ValueError, match="last_pmid"):
        Subscriber("http://127.0.0.1:1", "k", **options)
    with pytest.raises(ValueError, match="last_pmid"):
        Subscriber("http://127.0.0.1:1", "k", last_pmid=True)


@pytest.mark.parametrize("proto", ["tcp", "ws"])
async def test_a_burst_of_taken_messages_is_acked_without_an_ack_flood(cluster: SdkCluster, proto: str) -> None:
    subscriber = cluster.subscriber("flo", proto=proto)
    await asyncio.wait_for(subscriber.wait_live(), 5)
    count = 600
    for n in range(count):
        await cluster.push_mid("flo", {"n": n})
    await eventually(lambda: subscriber.stats.live == count, timeout=20)
    taken = [await subscriber.__anext__() for _ in range(count)]   # all waiting: taken in one loop pass
    assert len(taken) == count
    await eventually(lambda: comet_acks(cluster) == (count, 0), timeout=10)
    assert subscriber.stats.sessions == 1 and cluster.comet.stats.closes.get("ack flood", 0) == 0
