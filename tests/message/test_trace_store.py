"""The trace store on Redis and on SQLite (same behaviour: order, caps, retention), the message node's trace intake
and queries with hostile input, and the verdicts it derives from a real message store (expired, trimmed, deleted).

Every store test runs on both back ends: a real redis-server (the ``redis_url`` fixture) and a SQLite file.
"""
from __future__ import annotations

import sqlite3
import time

import pytest

from message import trace_model
from message.client import MessageClient
from message.config import load as load_message_config
from message.node import MessageNode
from message.redis_storage import RedisStorage
from message.sqlite_storage import SqliteStorage
from message.storage import Limits
from message.trace_redis import HISTORY_LIST, MESSAGE_LIST, RedisTraceStore
from message.trace_service import MessageTracer
from message.trace_sqlite import SqliteTraceStore
from message.trace_store import MessageTraceConfig, untag
from tests.helpers import eventually, free_port
from thirdparty.rpc_client import RemoteError

BACKENDS = ["redis", "sqlite"]


class Clock:
    """A settable Unix clock (SQLite trace store, message store and tracer all read it)."""

    def __init__(self) -> None:
        self.now = time.time()

    def __call__(self) -> float:
        return self.now

    def ns(self) -> int:
        return int(self.now * 1e9)


def rec(n: int) -> bytes:
    return trace_model.pack(trace_model.acked(float(n), n, "i"))


def nums(records: list[bytes]) -> list[int]:
    return [trace_model.unpack(data)[2] for data in records]


@pytest.fixture(params=BACKENDS)
def backend(request):
    return request.param


@pytest.fixture
async def make_store(backend, request, tmp_path):
    """``await make_store(**trace config)`` -> (store, clock) on this test's back end."""
    opened = []
    clock = Clock()

    async def make(**overrides):
        config = MessageTraceConfig(**overrides)
        if backend == "redis":
            store = RedisTraceStore({"r1": request.getfixturevalue("redis_url")}, config)
        else:
            store = await SqliteTraceStore.open(str(tmp_path / "traces.db"), config, now=clock)
        opened.append(store)
        return store, clock

    yield make
    for store in opened:
        await store.close()


def tagged(records: list[bytes]) -> list[tuple[int, int]]:
    """(mid, number) of stored message records."""
    return [(mid, trace_model.unpack(record)[2]) for mid, record in (untag(item) for item in records)]


async def test_records_come_back_in_order_per_list(make_store):
    store, _ = await make_store()
    await store.write([("k", 5, rec(1)), ("k", 0, rec(2)), ("k", 5, rec(3)), ("other", 5, rec(4))])
    await store.write([("k", 6, rec(5)), ("k", 0, rec(6))])
    assert tagged(await store.message_records("k")) == [(5, 1), (5, 3), (6, 5)]
    assert nums(await store.history_records("k")) == [2, 6]
    assert tagged(await store.message_records("other")) == [(5, 4)]
    assert await store.message_records("nobody") == [] and await store.history_records("nobody") == []


async def test_each_list_keeps_its_newest_records_up_to_its_cap(make_store):
    store, _ = await make_store(max_message_records=3, max_history_records=2)
    await store.write([("k", 9, rec(n)) for n in (1, 2)] + [("k", 0, rec(n)) for n in (1, 2)])
    await store.write([("k", 10, rec(n)) for n in (3, 4)] + [("k", 0, rec(3))])
    await store.write([("k", 11, rec(n)) for n in range(5, 20)] + [("k", 0, rec(n)) for n in range(4, 9)])
    assert tagged(await store.message_records("k")) == [(11, 17), (11, 18), (11, 19)]
    assert nums(await store.history_records("k")) == [7, 8]


async def test_redis_lists_expire_after_the_retention(redis_url):
    store = RedisTraceStore({"r1": redis_url}, MessageTraceConfig(retention=1))
    try:
        await store.write([("k", 7, rec(1)), ("k", 0, rec(2))])
        client = store._shards["r1"].client
        for name in (MESSAGE_LIST % "k", HISTORY_LIST % "k"):
            assert 0 < await client.pttl(name) <= 1000
        await eventually(lambda: _empty(store), timeout=3)
    finally:
        await store.close()


async def _empty(store) -> bool:
    return not (await store.message_records("k") or await store.history_records("k"))


async def test_sqlite_records_older_than_the_retention_are_not_read_and_the_sweep_deletes_them(tmp_path):
    clock = Clock()
    path = str(tmp_path / "traces.db")
    store = await SqliteTraceStore.open(path, MessageTraceConfig(retention=100), now=clock)
    try:
        await store.write([("k", 7, rec(1)), ("k", 0, rec(2))])
        clock.now += 60
        await store.write([("k", 7, rec(3)), ("k", 0, rec(4))])
        clock.now += 50
        assert tagged(await store.message_records("k")) == [(7, 3)]
        assert nums(await store.history_records("k")) == [4]
        await store.sweep()
        with sqlite3.connect(path) as db:
            assert db.execute("SELECT COUNT(*) FROM trace_records").fetchone() == (2,)
        clock.now += 60
        assert await store.message_records("k") == [] and await store.history_records("k") == []
    finally:
        await store.close()


# --- the message node's side: intake of other nodes' records, and verdicts with a real message store -------------

@pytest.fixture
async def message_node(tmp_path):
    port = free_port()
    node = MessageNode(load_message_config(None, {
        "rpc": {"bind": f"127.0.0.1:{port}"},
        "storage": {"backend": "sqlite", "sqlite_path": str(tmp_path / "m.db")},
        "trace": {"max_records_per_call": 12, "max_event_bytes": 64}}))
    await node.start()
    client = MessageClient(f"127.0.0.1:{port}")
    yield node, client
    await client.close()
    await node.stop()


async def test_trace_intake_keeps_valid_records_and_drops_hostile_ones(message_node):
    node, client = message_node
    good = [["k", 5, rec(1)], ["k", 0, rec(2)]]
    bad = [["x" * 129, 5, rec(3)], ["a\nb", 5, rec(3)], ["k", -1, rec(3)], ["k", "5", rec(3)], ["k", 1 << 63, rec(3)],
           ["k", 5, "text"], ["k", 5, b""], ["k", 5, b"x" * 65], ["k", 5], "junk"]
    assert await client.trace(good + bad) == 2
    assert node.tracer.rejected == len(bad)
    await node.tracer.buffer.flush()
    assert tagged(await node.tracer.store.message_records("k")) == [(5, 1)]
    assert nums(await node.tracer.store.history_records("k")) == [2]
    for hostile, needle in (({"k": 1}, "must be a list"), ([["k", 0, rec(1)]] * 13, "more than 12")):
        with pytest.raises(RemoteError) as caught:
            await client.trace(hostile)
        assert caught.value.code == 65534 and needle in caught.value.message


@pytest.mark.parametrize("key, mid, needle", [("x" * 129, 1, "129 bytes"), ("k", 0, "mid must be"),
                                               ("k", -3, "mid must be"), ("k\x00", 1, "control")])
async def test_trace_queries_refuse_bad_arguments(message_node, key, mid, needle):
    _, client = message_node
    with pytest.raises(RemoteError) as caught:
        await client.trace_query("MsgTrace", key, mid)
    assert caught.value.code == 65534 and needle in caught.value.message


@pytest.fixture
async def stack(backend, request, tmp_path):
    """(message store with 2 messages per key, trace store, tracer) on this test's back end, one settable clock."""
    clock = Clock()
    limits = Limits(max_per_key=2)
    config = MessageTraceConfig()
    if backend == "redis":
        url = request.getfixturevalue("redis_url")
        storage = RedisStorage({"r1": url}, limits=limits, now_ns=clock.ns)
        store = RedisTraceStore({"r1": url}, config)
    else:
        storage = await SqliteStorage.open(str(tmp_path / "m.db"), limits=limits, now_ns=clock.ns)
        store = await SqliteTraceStore.open(str(tmp_path / "t.db"), config, now=clock)
    tracer = MessageTracer(store, storage, config, limits, clock=clock)
    yield storage, tracer, clock
    await tracer.close()
    await storage.close()


async def push(storage, tracer, key: str, expire: int, conns=()) -> int:
    """A push as the comet traces it: saved (so stored unless expire is 0), written to ``conns``."""
    mid = await storage.save(key, b'{"a":1}', expire)
    now = tracer._clock()
    record = trace_model.pushed(now, "node1", "h/1", now, now, list(conns), [], None, 7, expire)
    tracer.buffer.add((key, mid, trace_model.pack(record)))
    return mid


async def state(tracer, key: str, mid: int) -> str:
    return (await tracer.message_trace(key, mid))["verdict"]["state"]


async def test_verdicts_derived_from_the_message_store(stack):
    storage, tracer, clock = stack
    waiting = await push(storage, tracer, "w", 600)
    lost = await push(storage, tracer, "l", 0)
    written = await push(storage, tracer, "d", 0, conns=[3])
    assert [await state(tracer, key, mid) for key, mid in (("w", waiting), ("l", lost), ("d", written))] == \
        ["stored_not_fetched", "failed", "delivered"]
    first, second, third = [await push(storage, tracer, "t", 600) for _ in range(3)]  # the store keeps 2
    assert [await state(tracer, "t", mid) for mid in (first, second, third)] == \
        ["trimmed", "stored_not_fetched", "stored_not_fetched"]
    deleted = await push(storage, tracer, "x", 600)
    clock.now += 1
    tracer.deleted("x", await storage.delete("x"))
    assert await state(tracer, "x", deleted) == "deleted"
    clock.now += 601
    trace = await tracer.message_trace("w", waiting)
    assert trace["verdict"]["state"] == "expired" and trace["events"][-1]["kind"] == "expired"
    assert await state(tracer, "w", waiting + 1) == "unknown"
    view = await tracer.key_trace("t")
    assert [(item["mid"], item["state"]) for item in view["messages"]] == \
        [(third, "expired"), (second, "expired"), (first, "expired")]
