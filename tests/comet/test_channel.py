"""comet.channel: connection registry, per-key limit, per-key locks that do not outlive their use."""
import asyncio

import pytest

from comet.channel import ChannelFull, ChannelTable, next_conn_id
from comet.message_codec import EncodedMessage


class FakeConnection:
    protocol = "tcp"

    def __init__(self, key, accept=True):
        self.key = key
        self.conn_id = next_conn_id()
        self.accept = accept
        self.sent = []
        self.closed = None

    def send(self, message: EncodedMessage) -> bool:
        self.sent.append(message.mid)
        return self.accept

    def close(self, reason):
        self.closed = reason


def test_add_get_remove_and_counts():
    table = ChannelTable(max_conns_per_key=3)
    a1, a2, b1 = FakeConnection("a"), FakeConnection("a"), FakeConnection("b")
    for conn in (a1, a2, b1):
        table.add(conn)
    assert table.get("a") == [a1, a2]
    assert table.count("a") == 2 and table.count("zzz") == 0
    assert (table.connection_count, table.channel_count) == (3, 2)
    assert table.remove(a1) is True
    assert table.remove(a1) is False
    table.remove(a2)
    assert table.get("a") == [] and table.channel_count == 1


def test_per_key_connection_limit():
    table = ChannelTable(max_conns_per_key=2)
    table.add(FakeConnection("k"))
    table.add(FakeConnection("k"))
    with pytest.raises(ChannelFull):
        table.add(FakeConnection("k"))
    table.add(FakeConnection("other"))  # other keys are not affected
    assert table.count("k") == 2


def test_remove_only_the_registered_object():
    table = ChannelTable(4)
    conn = FakeConnection("k")
    table.add(conn)
    impostor = FakeConnection("k")
    impostor.conn_id = conn.conn_id
    assert table.remove(impostor) is False
    assert table.get("k") == [conn]


def test_get_is_a_snapshot():
    table = ChannelTable(4)
    conns = [FakeConnection("k") for _ in range(3)]
    for conn in conns:
        table.add(conn)
    for conn in table.get("k"):
        table.remove(conn)  # mutating while iterating the snapshot is fine
    assert table.channel_count == 0


def test_close_key_and_close_all():
    table = ChannelTable(4)
    a1, a2, b1 = FakeConnection("a"), FakeConnection("a"), FakeConnection("b")
    for conn in (a1, a2, b1):
        table.add(conn)
    assert table.close_key("a", "closed by rpc") == 2
    assert (a1.closed, a2.closed, b1.closed) == ("closed by rpc", "closed by rpc", None)
    assert table.close_key("a", "again") == 0
    assert table.close_all("node stopping") == 1
    assert b1.closed == "node stopping"
    assert table.connection_count == 0 and table.channel_count == 0


async def test_lock_serialises_a_key_and_is_dropped_after_use():
    table = ChannelTable(4)
    order = []

    async def holder(name, delay):
        async with table.lock("k"):
            order.append(f"{name} in")
            await asyncio.sleep(delay)
            order.append(f"{name} out")

    first = asyncio.create_task(holder("first", 0.02))
    await asyncio.sleep(0)
    second = asyncio.create_task(holder("second", 0))
    await asyncio.sleep(0)
    assert table.channel_count == 1  # alive while held and awaited
    await asyncio.gather(first, second)
    assert order == ["first in", "first out", "second in", "second out"]
    assert table.channel_count == 0  # no lock left behind for a key without connections


async def test_lock_is_released_on_error():
    table = ChannelTable(4)
    with pytest.raises(RuntimeError):
        async with table.lock("k"):
            raise RuntimeError("boom")
    assert table.channel_count == 0
    async with table.lock("k"):
        pass


async def test_lock_keeps_channel_of_connected_key():
    table = ChannelTable(4)
    conn = FakeConnection("k")
    table.add(conn)
    async with table.lock("k"):
        table.remove(conn)
        assert table.channel_count == 1  # still locked
    assert table.channel_count == 0


async def test_lock_many_sorted_and_deduplicated_no_deadlock():
    table = ChannelTable(4)
    done = []

    async def multi(name, keys):
        async with table.lock_many(keys):
            await asyncio.sleep(0.005)
            done.append(name)

    await asyncio.wait_for(asyncio.gather(
        multi("x", ["a", "b", "c", "a"]), multi("y", ["c", "b", "a"]), multi("z", ["b"])), timeout=2)
    assert sorted(done) == ["x", "y", "z"]
    assert table.channel_count == 0


async def test_lock_many_releases_on_cancel():
    table = ChannelTable(4)
    entered = asyncio.Event()

    async def hold():
        async with table.lock("b"):
            entered.set()
            await asyncio.sleep(10)

    holder = asyncio.create_task(hold())
    await entered.wait()

    async def multi():
        async with table.lock_many(["a", "b"]):
            pass

    waiter = asyncio.create_task(multi())
    await asyncio.sleep(0.01)
    waiter.cancel()
    holder.cancel()
    await asyncio.gather(waiter, holder, return_exceptions=True)
    assert table.channel_count == 0
    async with table.lock_many(["a", "b"]):
        pass
