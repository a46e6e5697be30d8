"""Broadcast on the comet (comet/broadcast.py, CometRPC.PushPublic).

Unit tests drive a Broadcaster over a real ChannelTable of recording connections with a fake clock and sleep (the
token bucket, the chunks, skipping, stopping); the others run a real comet (tests/comet/conftest.py, with the
in-memory message node) and real TCP and WebSocket clients.
"""
from __future__ import annotations

import asyncio
import json

import httpx
import pytest

from comet.broadcast import Broadcaster, TokenBucket
from comet.channel import ChannelTable, next_conn_id
from comet.message_codec import EncodedMessage
from tests.comet.clients import TcpSub, WsSub, slow_socket
from tests.helpers import eventually
from thirdparty.rpc_client import RemoteError, RpcClient
from thirdparty.rpc_codec import RpcError

MSG = b'{"title":"to everyone"}'


def new_json(msg: bytes, mid: int, gid: int) -> bytes:
    return b'{"msg":%b,"mid":%d,"gid":%d}' % (msg, mid, gid)


def old_json(msg: bytes, mid: int, gid: int) -> bytes:
    return json.dumps({"msg": msg.decode(), "mid": mid, "gid": gid}, separators=(",", ":"),
                      ensure_ascii=False).encode()


class RecordingConn:
    """A Connection that appends what it is sent to a shared event list."""

    protocol = "tcp"

    def __init__(self, key: str, events: list, accept: bool = True) -> None:
        self.key = key
        self.conn_id = next_conn_id()
        self.since_mid = 0
        self.close_reason: str | None = None
        self.events = events
        self.accept = accept

    def send(self, message: EncodedMessage) -> bool:
        if not self.accept:
            self.close_reason = "queue overflow"
            return False
        self.events.append(("public" if message.gid == 1 else "private", self.key, message.mid))
        return True

    def close(self, reason: str) -> None:
        self.close_reason = self.close_reason or reason


class FakeTime:
    """A clock that moves only when the broadcaster sleeps; every sleep is recorded in the event list."""

    def __init__(self, events: list) -> None:
        self.now = 100.0
        self.events = events
        self.on_sleep = None  # called at every sleep, before it returns
        self.hold = False     # a sleep for tokens never returns (until cancelled)

    def clock(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        self.events.append(("sleep", seconds))
        if self.hold and seconds > 0:
            await asyncio.Event().wait()
        self.now += seconds
        if self.on_sleep is not None:
            self.on_sleep()
        await asyncio.sleep(0)


def make(events: list, conns: int, *, chunk: int = 3, rate: float = 1e9, max_queued: int = 4, keys: int = 1):
    table = ChannelTable(1000)
    added = [RecordingConn(f"k{i % keys}", events) for i in range(conns)]
    for conn in added:
        table.add(conn)
    fake = FakeTime(events)
    caster = Broadcaster(table, max_queued=max_queued, chunk=chunk, rate=rate, max_message_bytes=1000,
                         clock=fake.clock, sleep=fake.sleep)
    return table, added, fake, caster


async def received_json(sub: TcpSub | WsSub) -> dict:
    """The next message of a client, parsed (a TCP frame is ``$len\\r\\n<json>\\r\\n``)."""
    frame = await sub.recv_frame()
    return json.loads(frame.split(b"\r\n")[1] if isinstance(sub, TcpSub) else frame)


async def finished(caster: Broadcaster, done: int) -> None:
    await eventually(lambda: caster.done == done)


# -- the pure pieces, with a fake clock ----------------------------------------------------------------------


def test_token_bucket_starts_full_and_refills_at_its_rate():
    bucket = TokenBucket(rate=10, capacity=5, now=0.0)
    assert bucket.take(5, 0.0) == 0.0
    assert bucket.take(1, 0.0) == pytest.approx(0.1)   # empty: one token in 0.1 s
    assert bucket.take(5, 0.2) == pytest.approx(0.3)   # two there, three to come; nothing taken
    assert bucket.take(5, 0.5) == 0.0
    assert bucket.take(5, 100.0) == 0.0                # a long pause refills to the capacity, not beyond
    assert bucket.take(1, 100.0) > 0


async def test_the_bucket_holds_20_ms_of_the_rate_and_at_least_a_chunk():
    assert make([], 0, chunk=3, rate=1000)[3]._bucket.capacity == 20
    assert make([], 0, chunk=300, rate=1000)[3]._bucket.capacity == 300


async def test_chunks_are_written_with_a_yield_between_them():
    events: list = []
    _, conns, _, caster = make(events, 8, chunk=3)
    caster.start()
    assert caster.broadcast(7, MSG) == 8
    await finished(caster, 1)
    await caster.stop()
    shape = ["w" if event[0] == "public" else "yield" if event[1] == 0 else "wait" for event in events]
    # a yield after every chunk; the bucket holds 20 ms of the (huge) rate, so no wait for tokens
    assert shape == ["w"] * 3 + ["yield"] + ["w"] * 3 + ["yield"] + ["w"] * 2 + ["yield"]
    assert [event for event in events if event[0] == "public"] == [("public", "k0", 7)] * 8
    assert caster.stats() == {"queued": 1, "done": 1, "written": 8, "skipped": 0, "refused": 0, "dropped": 0,
                              "pending": 0}


async def test_the_rate_bounds_connection_writes_per_second():
    events: list = []
    _, _, fake, caster = make(events, 12, chunk=4, rate=8)
    start = fake.now
    caster.start()
    caster.broadcast(7, MSG)
    await finished(caster, 1)
    await caster.stop()
    waits = [event[1] for event in events if event[0] == "sleep" and event[1] > 0]
    assert waits == [pytest.approx(0.5), pytest.approx(0.5)]   # a full bucket, then 4 tokens at 8 per second
    assert fake.now - start == pytest.approx(1.0)
    written_at, now = [], start   # the fake time of each write: 4 at once (a full bucket), then 4 every 0.5 s
    for event in events:
        if event[0] == "sleep":
            now += event[1]
        else:
            written_at.append(round(now - start, 6))
    assert written_at == [0.0] * 4 + [0.5] * 4 + [1.0] * 4


async def test_the_bucket_is_shared_by_the_broadcasts_in_the_queue():
    events: list = []
    _, _, fake, caster = make(events, 4, chunk=4, rate=4)
    start = fake.now
    caster.start()
    caster.broadcast(1, MSG)
    caster.broadcast(2, MSG)
    caster.broadcast(3, MSG)
    await finished(caster, 3)
    await caster.stop()
    assert [event[2] for event in events if event[0] == "public"] == [1] * 4 + [2] * 4 + [3] * 4   # FIFO
    assert fake.now - start == pytest.approx(2.0)   # 12 writes at 4 per second after a burst of 4


async def test_connections_closed_since_the_snapshot_are_skipped():
    events: list = []
    table, conns, fake, caster = make(events, 6, chunk=2, keys=3)
    caster.start()
    assert caster.broadcast(9, MSG) == 6
    closing = [conns[4], conns[5]]   # the snapshot is by key: conns 0, 3 (k0) | 1, 4 (k1) | 2, 5 (k2)

    def close_two() -> None:  # while the first chunk's yield runs
        for conn in closing:
            if conn.close_reason is None:
                conn.close("client closed")
                table.remove(conn)

    fake.on_sleep = close_two
    await finished(caster, 1)
    await caster.stop()
    written = {event[1:] for event in events if event[0] == "public"}
    assert len([event for event in events if event[0] == "public"]) == 4
    assert caster.written == 4 and caster.skipped == 2
    assert all(conn.close_reason is None for conn in conns if conn not in closing)
    assert written == {("k0", 9), ("k1", 9), ("k2", 9)}


async def test_a_connection_that_cannot_take_it_leaves_the_table():
    events: list = []
    table, conns, _, caster = make(events, 3, chunk=10)
    conns[1].accept = False
    caster.start()
    caster.broadcast(5, MSG)
    await finished(caster, 1)
    await caster.stop()
    assert (caster.written, caster.skipped) == (2, 1)
    assert table.get("k0") == [conns[0], conns[2]]


async def test_connections_added_after_the_snapshot_do_not_get_it():
    events: list = []
    table, _, fake, caster = make(events, 2, chunk=1)
    late = RecordingConn("late", events)
    fake.on_sleep = lambda: table.add(late) if table.count("late") == 0 else None
    caster.start()
    assert caster.broadcast(5, MSG) == 2
    await finished(caster, 1)
    await caster.stop()
    assert table.count("late") == 1
    assert [event[1] for event in events if event[0] == "public"] == ["k0", "k0"]


async def test_queue_full_is_refused_and_stop_drops_what_is_queued():
    events: list = []
    _, _, _, caster = make(events, 2, max_queued=2)   # not started: nothing leaves the queue
    caster.broadcast(1, MSG)
    caster.broadcast(2, MSG)
    with pytest.raises(RpcError) as info:
        caster.broadcast(3, MSG)
    assert (info.value.code, info.value.message) == (65535, "broadcast queue full")
    assert caster.stats()["refused"] == 1 and caster.pending == 2
    await caster.stop()
    assert caster.stats() == {"queued": 2, "done": 0, "written": 0, "skipped": 0, "refused": 1, "dropped": 2,
                              "pending": 0}
    with pytest.raises(RpcError) as info:
        caster.broadcast(4, MSG)
    assert info.value.code == 65535
    assert events == []


async def test_stop_cancels_a_broadcast_being_written():
    events: list = []
    _, _, fake, caster = make(events, 10, chunk=2, rate=50)   # the bucket holds one chunk (20 ms of 50/s is 1)
    fake.hold = True   # the second chunk waits for tokens forever
    caster.start()
    caster.broadcast(1, MSG)
    caster.broadcast(2, MSG)
    await eventually(lambda: len(events) == 4)   # two writes, the yield, the wait
    await caster.stop()
    assert caster.stats()["dropped"] == 2 and caster.done == 0 and caster.written == 2
    settled = len(events)
    await asyncio.sleep(0.01)
    assert len(events) == settled   # the worker is gone


async def test_no_connection_is_done_at_once_even_with_a_full_queue():
    _, _, _, caster = make([], 0, max_queued=1)
    assert caster.broadcast(1, MSG) == 0
    assert caster.stats()["queued"] == 1 and caster.stats()["done"] == 1 and caster.pending == 0


@pytest.mark.parametrize("mid, msg", [
    (0, MSG), (-1, MSG), (1 << 63, MSG), (True, MSG), ("1", MSG), (1.0, MSG),
    (1, b"{bad"), (1, b""), (1, b"\xff"), (1, "text"), (1, b'"' + b"x" * 1000 + b'"'),
])
async def test_bad_arguments_are_65534_and_queue_nothing(mid, msg):
    events: list = []
    _, _, _, caster = make(events, 2)
    with pytest.raises(RpcError) as info:
        caster.broadcast(mid, msg)
    assert info.value.code == 65534
    assert caster.stats()["queued"] == 0 and caster.pending == 0


# -- a real comet, real clients ------------------------------------------------------------------------------


async def test_every_connection_of_every_key_gets_it_once_in_its_form(node, clients):
    opened = []
    for key in ("alice", "bob", "carol"):
        for transport in (TcpSub, WsSub):
            for version in ("1", None):
                client, _ = await clients.open(transport, node, key, version=version)
                opened.append((key, transport, version, client))
    mid = 17160000000000001
    assert await node.rpc.push_public(mid, MSG) == len(opened) == 12
    for key, transport, version, client in opened:
        form = new_json if version else old_json
        assert await client.recv_frame() == transport.wire(form(MSG, mid, 1)), (key, transport.proto, version)
    for key in ("alice", "bob", "carol"):   # once: the next frame of each client is a private push
        await node.rpc.push_private(key, b'{"p":1}', 0)
    for key, transport, version, client in opened:
        frame = await client.recv_frame()
        assert b'"gid":0' in frame and b'"p' in frame, frame
    await eventually(lambda: node.broadcaster.done == 1)
    stat = await node.rpc.stat()
    assert stat["broadcast"] == {"queued": 1, "done": 1, "written": 12, "skipped": 0, "refused": 0, "dropped": 0,
                                 "pending": 0}


async def test_broadcasts_arrive_in_queue_order(start_node, clients):
    node = await start_node(broadcast={"chunk": 1})
    subs = [(await clients.open(transport, node, f"u{i}", version="1"))[0]
            for i, transport in enumerate((TcpSub, WsSub, TcpSub, WsSub))]
    mids = [300, 100, 200, 400]   # the queue's order, not the mids' order
    for mid in mids:
        assert await node.rpc.push_public(mid, b'{"n":%d}' % mid) == 4
    for sub in subs:
        got = [await received_json(sub) for _ in mids]
        assert [item["mid"] for item in got] == mids
        assert {item["gid"] for item in got} == {1}


async def test_queue_full_is_65535_over_rpc(start_node, clients):
    node = await start_node(broadcast={"max_queued": 2, "chunk": 1, "rate": 1})
    for i in range(3):
        await clients.open(TcpSub, node, f"q{i}")
    assert await node.rpc.push_public(1, MSG) == 3   # 1 s per connection after the first: still being written
    assert await node.rpc.push_public(2, MSG) == 3
    with pytest.raises(RemoteError) as info:
        await node.rpc.push_public(3, MSG)
    assert (info.value.code, info.value.message) == (65535, "broadcast queue full")
    stat = await node.rpc.stat()
    assert stat["broadcast"]["refused"] == 1 and stat["broadcast"]["pending"] == 2
    await node.stop()
    assert node.broadcaster.stats()["dropped"] == 2


async def test_closed_connections_are_skipped_and_new_ones_do_not_get_it(start_node, clients):
    node = await start_node(broadcast={"chunk": 1, "rate": 1})   # one connection per second after the first
    first, _ = await clients.open(TcpSub, node, "a", version="1")
    gone, _ = await clients.open(WsSub, node, "b", version="1")
    assert await node.rpc.push_public(55, MSG) == 2
    assert await first.recv_frame() == TcpSub.wire(new_json(MSG, 55, 1))
    await gone.close()
    await eventually(lambda: node.table.count("b") == 0)
    late, _ = await clients.open(WsSub, node, "a", version="1")
    await eventually(lambda: node.broadcaster.done == 1)
    assert (node.broadcaster.written, node.broadcaster.skipped) == (1, 1)
    result = await node.rpc.push_private("a", b'{"p":2}', 0)
    assert await late.recv_frame() == WsSub.wire(new_json(b'{"p":2}', result.mid, 0))   # no public message first
    assert await first.recv_frame() == TcpSub.wire(new_json(b'{"p":2}', result.mid, 0))


@pytest.mark.parametrize("proto", ["tcp", "ws"])
async def test_a_slow_reader_overflowing_is_closed_as_for_private_pushes(proto, start_node, clients):
    node = await start_node(limits={"max_queue": 4})
    slow = await slow_socket(node, proto, "slow")   # first in the snapshot: written before the fast one
    transport = TcpSub if proto == "tcp" else WsSub
    fast, _ = await clients.open(transport, node, "fast", version="1")
    big = b'{"blob":"' + b"x" * 60_000 + b'"}'
    try:
        for mid in range(1, 401):
            online = await node.rpc.push_public(mid, big)
            assert await fast.recv_frame() == transport.wire(new_json(big, mid, 1))
            if node.stats.closes["queue overflow"]:
                break
        assert online == 2
        assert node.stats.closes["queue overflow"] == 1
        assert node.broadcaster.skipped == 1
        await eventually(lambda: node.table.count("slow") == 0)
        assert await node.rpc.push_public(mid + 1, MSG) == 1   # the fast client still gets everything
        assert await fast.recv_frame() == transport.wire(new_json(MSG, mid + 1, 1))
    finally:
        slow.close()
        await slow.wait_closed()
    assert mid > 4


async def test_private_pushes_are_not_starved_by_a_broadcast(start_node):
    """Private pushes to another key complete while a broadcast to many connections is being written, and their
    messages are written between two chunks of it."""
    chunk = 3
    node = await start_node(broadcast={"chunk": chunk, "rate": 1e9})   # only the chunks make room
    events: list = []
    for i in range(600):
        node.table.add(RecordingConn(f"many{i % 50}", events))
    node.table.add(RecordingConn("private", events))
    assert await node.rpc.push_public(42, MSG) == 601
    done_when_pushed = []
    for _ in range(3):
        await node.rpc.push_private("private", b'{"p":1}', 0)
        done_when_pushed.append(node.broadcaster.done)
    await eventually(lambda: node.broadcaster.done == 1)
    assert done_when_pushed == [0, 0, 0]   # each private push was answered while the broadcast was running
    publics = [i for i, event in enumerate(events) if event[0] == "public"]
    privates = [i for i, event in enumerate(events) if event[0] == "private"]
    assert len(publics) == 601 and len(privates) == 3
    assert privates[-1] < publics[-1]
    for index in privates:   # between two chunks, never inside one
        assert sum(1 for i in publics if i < index) % chunk == 0


async def test_standby_or_empty_node_answers_zero(node):
    assert await node.rpc.push_public(1, MSG) == 0
    assert (await node.rpc.stat())["broadcast"]["done"] == 1


@pytest.mark.parametrize("params", [[0, MSG], [1 << 63, MSG], ["1", MSG], [1, b"{bad"], [1, b""], [1, 5], [1]])
async def test_push_public_bad_params_over_rpc(node, params):
    raw = RpcClient(node.addresses["rpc"][0], timeout=3.0)
    try:
        with pytest.raises(RemoteError) as info:
            await raw.call("CometRPC.PushPublic", *params)
        assert info.value.code == 65534
        assert await raw.call("CometRPC.PushPublic", 1, '{"a":"é"}') == {"online": 0}   # str accepted
    finally:
        await raw.close()


async def test_stat_and_metrics_show_the_counters(node, clients):
    client, _ = await clients.open(TcpSub, node, "m")
    await node.rpc.push_public(3, MSG)
    await client.recv_frame()
    await eventually(lambda: node.broadcaster.done == 1)
    async with httpx.AsyncClient(trust_env=False) as http:
        stat = (await http.get(f"http://{node.addresses['stat'][0]}/stat")).json()
        metrics = (await http.get(f"http://{node.addresses['stat'][0]}/metrics")).text
    assert stat["broadcast"] == {"queued": 1, "done": 1, "written": 1, "skipped": 0, "refused": 0, "dropped": 0,
                                 "pending": 0}
    assert 'pushcluster_comet_broadcasts_total{node="node1",outcome="queued"} 1.0' in metrics
    assert 'pushcluster_comet_broadcast_connections_total{node="node1",outcome="written"} 1.0' in metrics
    assert 'pushcluster_comet_broadcasts_pending{node="node1"} 0.0' in metrics
