"""The public (broadcast) message store: Storage.save_public / fetch_public on both back ends (real redis-server,
SQLite), MessageRPC.SavePublic / GetPublic on a real MessageNode, and MessageClient / MessagePool.

The clock is injected, so expiry and backwards clock steps need no sleeping.
"""
import functools

import pytest
import redis

from message.client import FetchResult, MessageNodeInfo, MessagePool
from message.config import load
from message.mid import MAX_MID, time_id
from message.redis_storage import (MID_KEY, MSG_KEY, PUBLIC_MID, PUBLIC_MSG, PUBLIC_RING_NAME, PUBLIC_TOP,
                                   PUBLIC_TRIM, RedisStorage)
from message.storage import Limits, StorageUnavailable
from tests.helpers import free_port
from tests.message.conftest import HOUR, START_NS, Clock, assert_param_error, assert_rejected_before_io, raw_rpc
from tests.message.test_pool import FirstChoice, ScriptedNode
from thirdparty.confload import ConfigError
from thirdparty.ring import Ring
from thirdparty.rpc_client import RemoteError, RpcUnavailable
from thirdparty.rpc_codec import ERR_INTERNAL


def dead_shard_names() -> tuple[str, str]:
    """Two shard names (live, dead) such that the ring puts the public records on the dead one."""
    for n in range(100):
        live, dead = f"live{n}", f"dead{n}"
        if Ring({live: 1, dead: 1}).get(PUBLIC_RING_NAME) == dead:
            return live, dead
    raise AssertionError("no name pair puts push:pub on the dead shard")


# --- Storage ------------------------------------------------------------------------------------------------

async def test_public_mids_strictly_increase_on_their_own_sequence(make_store):
    clock = Clock()
    store = await make_store(clock=clock)
    first = await store.save_public(b'{"n":1}', 86400)
    assert first == time_id(START_NS)
    assert await store.save("k", b"private", 86400) == first  # a key's sequence is its own
    clock.step(-HOUR)  # a backwards clock step never makes a mid go down
    second = await store.save_public(b'{"n":2}', 86400)
    third = await store.save_public(b'{"n":3}', 86400)
    assert first < second < third
    clock.step(2 * HOUR)
    fourth = await store.save_public(b'{"n":4}', 86400)
    assert fourth == time_id(clock.ns)
    result = await store.fetch_public(0)
    assert result == FetchResult([(first, b'{"n":1}'), (second, b'{"n":2}'), (third, b'{"n":3}'),
                                  (fourth, b'{"n":4}')], False)
    assert (await store.fetch_public(second)).msgs == [(third, b'{"n":3}'), (fourth, b'{"n":4}')]
    assert await store.fetch_public(fourth) == FetchResult([], False)


async def test_expire_zero_assigns_a_public_mid_but_stores_nothing(make_store):
    store = await make_store()
    online_only = await store.save_public(b"a", 0)
    stored = await store.save_public(b"b", 60)
    assert stored == online_only + 1
    assert await store.fetch_public(0) == FetchResult([(stored, b"b")], False)


async def test_the_cap_is_max_public_and_trims_the_oldest(make_store):
    store = await make_store(limits=Limits(max_per_key=1, max_public=3))
    mids = [await store.save_public(b"%d" % n, 600) for n in range(5)]
    result = await store.fetch_public(0)
    assert result.msgs == [(mid, b"%d" % n) for n, mid in enumerate(mids)][2:]
    assert result.trimmed
    assert (await store.fetch_public(mids[0])).trimmed      # mids[1] was trimmed too
    assert not (await store.fetch_public(mids[1])).trimmed  # nothing newer than mids[1] is lost
    assert (await store.fetch_public(mids[1])).msgs == result.msgs


async def test_expired_public_messages_are_dropped_and_reported_trimmed(make_store):
    clock = Clock()
    store = await make_store(clock=clock)
    short = await store.save_public(b"short", 5)
    long = await store.save_public(b"long", 600)
    clock.step(10)
    result = await store.fetch_public(0)
    assert result == FetchResult([(long, b"long")], True)
    assert await store.fetch_public(short) == FetchResult([(long, b"long")], False)
    assert await store.fetch_public(0) == FetchResult([(long, b"long")], True)  # removed, still reported
    clock.step(600)
    assert await store.fetch_public(0) == FetchResult([], True)
    assert await store.fetch_public(long) == FetchResult([], False)


async def test_public_and_private_messages_never_mix(make_store):
    store = await make_store(limits=Limits(max_per_key=2, max_public=2))
    public = await store.save_public(b"public", 600)
    for key in ("k", PUBLIC_RING_NAME, "public", "pub"):  # names that look like the public records'
        await store.save(key, b"private", 600)
        assert [msg for _, msg in (await store.fetch(key, 0)).msgs] == [b"private"]
        assert await store.delete(key) == 1
    assert await store.fetch_public(0) == FetchResult([(public, b"public")], False)
    for _ in range(3):  # the public cap trims only public messages
        await store.save_public(b"more", 600)
    assert (await store.fetch("k", 0)).msgs == []
    assert not (await store.fetch("k", 0)).trimmed
    assert {msg for _, msg in (await store.fetch_public(0)).msgs} == {b"more"}


BAD_CALLS = [
    ("save_public", ("text", 60)),
    ("save_public", (None, 60)),
    ("save_public", (b"m" * 65537, 60)),
    ("save_public", (b"m", -1)),
    ("save_public", (b"m", 2592001)),
    ("save_public", (b"m", True)),
    ("save_public", (b"m", 1.5)),
    ("fetch_public", (-1,)),
    ("fetch_public", (MAX_MID + 1,)),
    ("fetch_public", ("0",)),
    ("fetch_public", (False,)),
]


@pytest.mark.parametrize("method, args", BAD_CALLS)
async def test_bad_arguments_are_rejected_before_any_io(tmp_path, method, args):
    await assert_rejected_before_io(tmp_path, method, args)


async def test_redis_public_records_live_on_the_ring_shard_of_push_pub(redis_url):
    base = redis_url.rsplit("/", 1)[0]
    urls = {"a": f"{base}/0", "b": f"{base}/1"}
    store = RedisStorage(urls, limits=Limits(mid_ttl=1000, max_public=1), now_ns=Clock())
    clients = {name: redis.Redis.from_url(url) for name, url in urls.items()}
    try:
        home = store.shard_of(PUBLIC_RING_NAME)
        other = "b" if home == "a" else "a"
        await store.save_public(b"1", 60)
        last = await store.save_public(b"2", 60)
        assert (await store.fetch_public(0)) == FetchResult([(last, b"2")], True)
        records = (PUBLIC_MID, PUBLIC_MSG, PUBLIC_TOP, PUBLIC_TRIM)
        assert clients[home].exists(*records) == 4
        assert clients[other].exists(*records) == 0
        assert int(clients[home].get(PUBLIC_MID)) == last
        assert clients[home].zcard(PUBLIC_MSG) == 1
        assert 55 <= clients[home].ttl(PUBLIC_MSG) <= 61
        for record in (PUBLIC_MID, PUBLIC_TOP, PUBLIC_TRIM):
            assert 990 <= clients[home].ttl(record) <= 1000, record
        assert not any(client.exists(MID_KEY % PUBLIC_RING_NAME, MSG_KEY % PUBLIC_RING_NAME)
                       for client in clients.values())
    finally:
        await store.close()
        for client in clients.values():
            client.close()


async def test_redis_public_set_that_expired_as_a_whole_reports_trimmed(redis_url):
    store = RedisStorage({"r1": redis_url}, now_ns=Clock())
    client = redis.Redis.from_url(redis_url)
    try:
        first = await store.save_public(b"a", 5)
        client.delete(PUBLIC_MSG)  # what Redis does when the set's EXPIRE fires
        assert await store.fetch_public(0) == FetchResult([], True)
        assert await store.fetch_public(first) == FetchResult([], False)
    finally:
        await store.close()
        client.close()


async def test_a_dead_public_shard_raises_storage_unavailable_and_keys_elsewhere_work(redis_url):
    live, dead = dead_shard_names()
    store = RedisStorage({live: redis_url, dead: f"redis://127.0.0.1:{free_port()}/0"}, now_ns=Clock())
    try:
        with pytest.raises(StorageUnavailable):
            await store.save_public(b"m", 60)
        with pytest.raises(StorageUnavailable):
            await store.fetch_public(0)
        on_live = next(f"user:{n}" for n in range(100) if store.shard_of(f"user:{n}") == live)
        mid = await store.save(on_live, b"m", 60)
        assert (await store.fetch(on_live, 0)).msgs == [(mid, b"m")]
    finally:
        await store.close()


# --- MessageRPC on a real node, MessageClient, MessagePool -------------------------------------------------------

@pytest.fixture
def start_node(start_node):
    """The conftest's ``start_node`` with the node's clock frozen at START_NS."""
    return functools.partial(start_node, now_ns=lambda: START_NS)


def storage_of(backend, request, tmp_path):
    if backend == "redis":
        return {"redis": {"r1": request.getfixturevalue("redis_url")}}
    return {"backend": "sqlite", "sqlite_path": str(tmp_path / "messages.db")}


@pytest.mark.parametrize("backend", ["redis", "sqlite"])
async def test_rpc_save_and_get_public(backend, request, tmp_path, start_node):
    node, client = await start_node(storage_of(backend, request, tmp_path))
    first = await client.save_public(b'{"all":1}', 600)
    assert first == time_id(START_NS)
    assert await client.save_public(b'{"all":0}', 0) == first + 1  # online only: a mid, nothing stored
    third = await client.save_public(b'{"all":2}', 600)
    assert third == first + 2
    assert await client.save_private("k", b'{"me":1}', 600) == first  # a key's sequence is its own
    assert await client.get_public(0) == FetchResult([(first, b'{"all":1}'), (third, b'{"all":2}')], False)
    assert await client.get_public(first) == FetchResult([(third, b'{"all":2}')], False)
    assert await client.get_private("k", 0) == FetchResult([(first, b'{"me":1}')], False)
    assert await client.del_private("k") == 1
    assert len((await client.get_public(0)).msgs) == 2
    assert node.counters.calls["SavePublic"] == 3 and node.counters.calls["GetPublic"] == 3


async def test_rpc_get_public_pages_by_the_byte_budget(start_node, redis_url):
    _, client = await start_node({"redis": {"r1": redis_url}}, max_fetch_bytes=100_000)
    payload = b"x" * 30_000
    mids = [await client.save_public(payload, 60) for _ in range(8)]
    got, after, replies = [], 0, 0
    while True:
        result = await client.get_public(after)
        if not result.msgs:
            break
        replies += 1
        assert 1 <= len(result.msgs) <= 3 and not result.trimmed
        got += [mid for mid, _ in result.msgs]
        after = got[-1]
    assert got == mids and replies == 3


@pytest.mark.parametrize("method, params", [
    ("SavePublic", [None, 60]),
    ("SavePublic", [b"m" * 65537, 60]),
    ("SavePublic", [b"m", "60"]),
    ("SavePublic", [b"m", True]),
    ("SavePublic", [b"m", -1]),
    ("SavePublic", [b"m", 2592001]),
    ("SavePublic", [b"m"]),            # wrong param count
    ("GetPublic", [-1]),
    ("GetPublic", ["0"]),
    ("GetPublic", [1 << 63]),
    ("GetPublic", []),
])
async def test_bad_params_get_65534_and_the_node_keeps_serving(start_node, redis_url, method, params):
    node, client = await start_node({"redis": {"r1": redis_url}})
    async with raw_rpc(node.config.rpc.bind) as raw:
        await assert_param_error(raw, method, params)
    mid = await client.save_public(b"ok", 60)
    assert (await client.get_public(0)).msgs == [(mid, b"ok")]


async def test_a_str_public_message_is_stored_as_utf8(start_node, redis_url):
    node, client = await start_node({"redis": {"r1": redis_url}})
    async with raw_rpc(node.config.rpc.bind) as raw:
        mid = await raw.call("MessageRPC.SavePublic", '{"t":"é"}', 60)
    assert (await client.get_public(0)).msgs == [(mid, '{"t":"é"}'.encode())]


async def test_a_dead_public_shard_gives_65535(start_node, redis_url):
    live, dead = dead_shard_names()
    _, client = await start_node({"redis": {live: redis_url, dead: f"redis://127.0.0.1:{free_port()}/0"}})
    for call in (lambda: client.save_public(b"m", 60), lambda: client.get_public(0)):
        with pytest.raises(RemoteError) as info:
            await call()
        assert (info.value.code, info.value.message) == (ERR_INTERNAL, "storage unavailable")


async def test_pool_repeats_public_calls_only_where_safe(start_node, redis_url):
    _, client = await start_node({"redis": {"r1": redis_url}})
    healthy = MessageNodeInfo(rpc=client.address)
    dead = MessageNodeInfo(rpc=f"127.0.0.1:{free_port()}")   # nothing listens there: never sent, safe to repeat
    pool = MessagePool([dead, healthy], rng=FirstChoice())
    try:
        mid = await pool.save_public(b"1", 600)
        assert await pool.get_public(0) == FetchResult([(mid, b"1")], False)
    finally:
        await pool.close()
    hangs_up = ScriptedNode("hang up")   # reads the call, then hangs up: the save may have run there
    await hangs_up.start()
    pool = MessagePool([MessageNodeInfo(hangs_up.address), healthy], rng=FirstChoice())
    try:
        with pytest.raises(RpcUnavailable):
            await pool.save_public(b"2", 600)
        assert hangs_up.received == ["MessageRPC.Ping", "MessageRPC.SavePublic"]
        assert await pool.get_public(0) == FetchResult([(mid, b"1")], False)  # repeated on the healthy node
        assert hangs_up.received[-1] == "MessageRPC.GetPublic"
    finally:
        await pool.close()
        await hangs_up.stop()


def test_max_public_config():
    assert load(None).storage.limits().max_public == 256
    assert load(None, {"storage": {"max_public": 5}}).storage.limits().max_public == 5
    with pytest.raises(ConfigError, match="max_public"):
        load(None, {"storage": {"max_public": 0}})
