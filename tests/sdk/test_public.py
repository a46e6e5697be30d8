"""Public messages (broadcasts, gid 1) in the subscriber SDK against an in-process cluster (real Redis, real
sockets): live and fetched, exactly once across a comet restart, ``last_pmid`` (0 / N / None), late public mids
(live and caught up), a public gap; and ``PushClient.push_all`` / ``fetch(pmid=)``."""
from __future__ import annotations

import asyncio
import time

import pytest

from comet.client import CometClient
from comet.subscriber import Gap, Subscriber
from comet.subscriber_api import GID_PUBLIC, Message
from tests.helpers import eventually
from tests.sdk.conftest import SdkCluster, collect
from web.push_client import BadParameterError, BroadcastResult, PushClient

pytestmark = [pytest.mark.redis, pytest.mark.integration]

PROTOS = ["tcp", "ws"]


def client(cluster: SdkCluster) -> PushClient:
    return PushClient(cluster.admin, public_url=cluster.public, token=cluster.admin_token or None)


def by_gid(messages: list[Message], gid: int) -> list[int]:
    return [message.mid for message in messages if message.gid == gid]


async def comet_reachable(cluster: SdkCluster) -> bool:
    reply = await cluster.push("nobody", {}, expire=0)
    return bool(reply["ret"] == 0)


async def start(subscriber: Subscriber) -> tuple[list[Message], asyncio.Task[None]]:
    got: list[Message] = []
    task = asyncio.create_task(collect(subscriber, got))
    await asyncio.wait_for(subscriber.wait_live(), 5)
    return got, task


async def stop(subscriber: Subscriber, task: asyncio.Task[None]) -> None:
    await subscriber.close()
    await asyncio.wait_for(task, 5)


@pytest.mark.parametrize("proto", PROTOS)
async def test_public_messages_live_and_fetched_exactly_once_across_a_comet_restart(cluster: SdkCluster,
                                                                                    proto: str) -> None:
    async with client(cluster) as push:
        stored = (await push.push_all({"n": 0}, expire=600)).mid            # before the subscriber: fetched
        subscriber = cluster.subscriber("alice", proto=proto)
        got, task = await start(subscriber)
        await eventually(lambda: len(got) == 1)
        first = await push.push_all({"n": 1}, expire=600)
        assert isinstance(first, BroadcastResult) and first.online == 1 and first.failed_comets == []
        private = await cluster.push_mid("alice", {"p": 1})
        await eventually(lambda: len(got) == 3)

        await cluster.stop_comet()
        down = await push.push_all({"n": 2}, expire=600)                    # stored; the comet could not take it
        assert down.failed_comets == ["node1"] and down.online == 0
        await cluster.start_comet()
        await eventually(lambda: subscriber.stats.sessions >= 2 and subscriber.state == "live", timeout=10)
        await eventually(lambda: comet_reachable(cluster), timeout=5)      # the web's RPC client out of backoff
        after = await push.push_all({"n": 3}, expire=600)
        await eventually(lambda: len(got) == 5, timeout=5)
        await asyncio.sleep(0.1)                                            # nothing more may come
    assert by_gid(got, GID_PUBLIC) == [stored, first.mid, down.mid, after.mid]
    assert by_gid(got, 0) == [private]
    assert [m.value for m in got if m.gid == GID_PUBLIC] == [{"n": n} for n in range(4)]
    assert [m.fetched for m in got if m.gid == GID_PUBLIC] == [True, False, True, False]
    assert subscriber.last_pmid == after.mid and subscriber.last_mid == private
    assert subscriber.positions == {0: private, GID_PUBLIC: after.mid}
    await stop(subscriber, task)


async def test_last_pmid_chooses_where_stored_public_messages_start(cluster: SdkCluster) -> None:
    async with client(cluster) as push:
        mids = [(await push.push_all({"n": n}, expire=600)).mid for n in range(3)]
        page = await push.fetch("bob", 0, pmid=mids[0])
        assert [m.mid for m in page.public] == mids[1:] and page.messages == [] and not page.ptrimmed
        assert all(m.gid == GID_PUBLIC and m.fetched for m in page.public)
        assert (await push.fetch("bob", 0)).public == []                   # no pmid: no public part
        with pytest.raises(BadParameterError):
            await push.fetch("bob", 0, pmid=-1)

        resumed = cluster.subscriber("bob", last_pmid=mids[0])
        none = cluster.subscriber("carol", last_pmid=None)
        assert none.last_pmid is None
        (got, task), (got_none, task_none) = await start(resumed), await start(none)
        await eventually(lambda: len(got) == 2)
        live = (await push.push_all({"n": 3}, expire=0)).mid               # online only: live, never stored
        await eventually(lambda: len(got) == 3 and len(got_none) == 1)
    assert by_gid(got, GID_PUBLIC) == mids[1:] + [live]
    assert by_gid(got_none, GID_PUBLIC) == [live] and none.last_pmid == live
    await stop(resumed, task)
    await stop(none, task_none)


async def test_a_late_public_mid_is_accepted_once_live(cluster: SdkCluster) -> None:
    """Two web nodes broadcasting at once can reach a comet in either order: a public mid below the newest one,
    never seen, is handed out; one seen already is dropped."""
    subscriber = cluster.subscriber("dave")
    got, task = await start(subscriber)
    comet = CometClient(cluster.rpc)
    try:
        async with client(cluster) as push:
            low = (await push.push_all({"n": 1}, expire=600)).mid
            high = (await push.push_all({"n": 3}, expire=600)).mid
        await eventually(lambda: len(got) == 2)
        assert await comet.push_public(low + 1, b'{"n":2}') == 1           # late: below `high`, never seen
        assert await comet.push_public(low, b'{"n":1}') == 1               # seen: a duplicate
        await eventually(lambda: len(got) == 3)
        await asyncio.sleep(0.1)
    finally:
        await comet.close()
    assert by_gid(got, GID_PUBLIC) == [low, high, low + 1] and subscriber.stats.duplicates == 1
    assert subscriber.last_pmid == high
    await stop(subscriber, task)


async def test_catch_up_fetches_a_public_message_below_the_newest_one(cluster: SdkCluster) -> None:
    """The newest public mid the subscriber saw (live only, 5 s ahead of the clock) is above one broadcast and
    stored while it was disconnected: the catch-up asks from 10 s below the newest and hands that one out."""
    subscriber = cluster.subscriber("erin")
    got, task = await start(subscriber)
    ahead = time.time_ns() // 100 + 5 * 10 ** 7
    comet = CometClient(cluster.rpc)
    try:
        assert await comet.push_public(ahead, b'{"n":"ahead"}') == 1
    finally:
        await comet.close()
    await eventually(lambda: len(got) == 1)
    await cluster.stop_comet()
    async with client(cluster) as push:
        missed = (await push.push_all({"n": "missed"}, expire=600)).mid
    assert missed < ahead
    await cluster.start_comet()
    await eventually(lambda: len(got) == 2, timeout=10)
    assert by_gid(got, GID_PUBLIC) == [ahead, missed] and got[1].fetched
    await stop(subscriber, task)


async def test_trimmed_public_messages_are_a_gap_of_gid_1(make_cluster: object) -> None:
    cluster: SdkCluster = await make_cluster(storage={"max_public": 2})      # type: ignore[operator]
    gaps: list[Gap] = []
    async with client(cluster) as push:
        mids = [(await push.push_all({"n": n}, expire=600)).mid for n in range(4)]
    subscriber = cluster.subscriber("fred", last_pmid=mids[0], on_gap=gaps.append)
    got, task = await start(subscriber)
    await eventually(lambda: len(got) == 2)
    assert by_gid(got, GID_PUBLIC) == mids[2:]
    assert gaps == [Gap("fred", GID_PUBLIC, mids[0], mids[2])] and subscriber.last_gap == gaps[0]
    await stop(subscriber, task)
