"""The Storage contract, run against both back ends: RedisStorage on a real redis-server and SqliteStorage.

The clock is injected (``Clock``), so tests step it back and forth without sleeping; mids live at today's
magnitude (~1.7e16), where a Redis double score cannot tell neighbouring mids apart.
"""
import asyncio
import hashlib

import pytest
import redis

from message.mid import MAX_MID, time_id
from message.redis_scripts import SAVE_LUA
from message.redis_storage import MID_KEY, MSG_KEY, SAVE_MANY_CHUNK, TOP_KEY, TRIM_KEY, RedisStorage
from message.sqlite_storage import SqliteStorage
from message.storage import Limits, StorageUnavailable
from tests.helpers import free_port
from tests.message.conftest import HOUR, START_NS, Clock, assert_rejected_before_io


@pytest.fixture
def sync_redis(redis_url):
    client = redis.Redis.from_url(redis_url)
    yield client
    client.close()


async def test_mids_are_time_ids_and_strictly_increase_across_a_backwards_clock_step(make_store):
    clock = Clock()
    store = await make_store(clock=clock)
    first = await store.save("k", b"1", 86400)
    assert first == time_id(START_NS)
    clock.step(-HOUR)
    second = await store.save("k", b"2", 86400)
    third = await store.save("k", b"3", 86400)
    assert first < second < third
    clock.step(2 * HOUR)
    fourth = await store.save("k", b"4", 86400)
    assert fourth == time_id(clock.ns)
    result = await store.fetch("k", 0)
    assert result.msgs == [(first, b"1"), (second, b"2"), (third, b"3"), (fourth, b"4")]
    assert await store.save("other", b"x", 86400) == time_id(clock.ns)  # mids are per key


async def test_concurrent_saves_to_one_key_get_distinct_increasing_mids(make_store):
    store = await make_store()  # a frozen clock: every save competes for the same time id
    payloads = [b'{"n":%d}' % n for n in range(50)]
    mids = await asyncio.gather(*(store.save("k", payload, 60) for payload in payloads))
    assert len(set(mids)) == 50
    assert sorted(mids) == list(range(time_id(START_NS), time_id(START_NS) + 50))
    result = await store.fetch("k", 0)
    assert result.msgs == sorted(zip(mids, payloads))


async def test_equal_payloads_never_collapse(make_store):
    store = await make_store()
    mids = [await store.save("k", b'{"same":1}', 60) for _ in range(3)]
    assert (await store.fetch("k", 0)).msgs == [(mid, b'{"same":1}') for mid in mids]


async def test_neighbouring_mids_that_share_a_double_are_both_kept_in_order(make_store):
    store = await make_store()
    low = await store.save("k", b"low", 60)
    high = await store.save("k", b"high", 60)
    assert high == low + 1 and float(low) == float(high)  # one Redis score for both
    assert (await store.fetch("k", 0)).msgs == [(low, b"low"), (high, b"high")]
    assert (await store.fetch("k", low)).msgs == [(high, b"high")]
    assert (await store.fetch("k", high)).msgs == []


async def test_fetch_after_a_mid_returns_exactly_the_newer_messages(make_store):
    clock = Clock()
    store = await make_store(clock=clock)
    mids = []
    for n in range(6):
        mids.append(await store.save("k", b"%d" % n, 600))
        clock.step(0.000_25 * n)  # gaps of 0, 2500, 5000, ... time ids
    for i, mid in enumerate(mids):
        result = await store.fetch("k", mid)
        assert [m for m, _ in result.msgs] == mids[i + 1:]
        assert not result.trimmed
    assert (await store.fetch("k", mids[2] - 1)).msgs[0][0] == mids[2]
    assert (await store.fetch("nobody", 0)).msgs == []


async def test_expire_zero_assigns_a_mid_but_stores_nothing(make_store):
    store = await make_store()
    stored = await store.save("k", b"kept", 60)
    online_only = await store.save("k", b"not kept", 0)
    after = await store.save("k", b"kept too", 60)
    assert stored < online_only < after
    result = await store.fetch("k", 0)
    assert result.msgs == [(stored, b"kept"), (after, b"kept too")]
    assert not result.trimmed


async def test_expired_messages_are_not_returned_and_report_trimmed(make_store):
    clock = Clock()
    store = await make_store(clock=clock)
    short = await store.save("k", b"short", 10)
    long = await store.save("k", b"long", 100)
    clock.step(11)
    result = await store.fetch("k", 0)
    assert result.msgs == [(long, b"long")]
    assert result.trimmed
    assert (await store.fetch("k", short)).trimmed is False  # the reader already had the expired one
    again = await store.fetch("k", 0)  # removed for good, still reported
    assert again.msgs == [(long, b"long")] and again.trimmed


async def test_cap_trims_the_oldest_and_reports_trimmed_only_below_the_trim_mark(make_store):
    store = await make_store(limits=Limits(max_per_key=3))
    mids = [await store.save("k", b"%d" % n, 60) for n in range(5)]
    result = await store.fetch("k", 0)
    assert result.msgs == [(mids[2], b"2"), (mids[3], b"3"), (mids[4], b"4")]
    assert result.trimmed
    assert (await store.fetch("k", mids[0])).trimmed  # mids[1] was lost
    above = await store.fetch("k", mids[1])  # everything the reader lacks is still there
    assert not above.trimmed and len(above.msgs) == 3


async def test_delete_removes_messages_but_mids_keep_increasing(make_store):
    clock = Clock()
    store = await make_store(clock=clock)
    await store.save("k", b"a", 60)
    last = await store.save("k", b"b", 60)
    await store.save("k", b"online", 0)
    assert await store.delete("k") == 2
    assert await store.delete("k") == 0
    result = await store.fetch("k", 0)
    assert result.msgs == [] and not result.trimmed
    clock.step(-HOUR)
    after = await store.save("k", b"c", 60)
    assert after > last + 1  # the expire=0 save also consumed a mid
    assert (await store.fetch("k", 0)).msgs == [(after, b"c")]


async def test_keys_are_independent_and_utf8(make_store):
    store = await make_store()
    await store.save("用户:1", b"a", 60)
    await store.save("用户:2", b"b", 60)
    await store.save("with space\u00a0{and} braces", b"c", 60)
    assert [m for _, m in (await store.fetch("用户:1", 0)).msgs] == [b"a"]
    assert await store.save("k" * 128, b"max key", 60) > 0
    assert await store.save_many([], b"x", 60) == {}


async def test_save_many_gives_each_distinct_key_its_mid(make_store):
    clock = Clock()
    store = await make_store(clock=clock)
    earlier = await store.save("b", b"old", 60)
    clock.step(-HOUR)
    saved = await store.save_many(["a", "b", "c", "a"], b"hello", 60)
    assert set(saved) == {"a", "b", "c"}
    assert saved["a"] == saved["c"] == time_id(clock.ns)
    assert saved["b"] == earlier + 1
    for key in "abc":
        assert (await store.fetch(key, 0)).msgs[-1] == (saved[key], b"hello")


BAD_CALLS = [
    ("save", ("", b"m", 1)),
    ("save", ("k" * 129, b"m", 1)),
    ("save", ("é" * 65, b"m", 1)),  # 130 UTF-8 bytes
    ("save", (7, b"m", 1)),
    ("save", ("a\nb", b"m", 1)),
    ("save", ("a\x7f", b"m", 1)),
    ("save", ("k", "text", 1)),
    ("save", ("k", b"m" * 65537, 1)),
    ("save", ("k", b"m", -1)),
    ("save", ("k", b"m", 2592001)),
    ("save", ("k", b"m", True)),
    ("save", ("k", b"m", 1.5)),
    ("save_many", ("k", b"m", 1)),
    ("save_many", (["k"] * 1001, b"m", 1)),
    ("save_many", (["k", ""], b"m", 1)),
    ("save_many", (["k", None], b"m", 1)),
    ("save_many", (["k"], b"m", -1)),
    ("fetch", ("", 0)),
    ("fetch", ("k", -1)),
    ("fetch", ("k", MAX_MID + 1)),
    ("fetch", ("k", False)),
    ("fetch", ("k", "0")),
    ("delete", ("",)),
    ("delete", (None,)),
]


@pytest.mark.parametrize("method, args", BAD_CALLS)
async def test_bad_arguments_are_rejected_before_any_io(tmp_path, method, args):
    """The stores cannot do I/O (a Redis on a closed port, a closed SQLite file), yet reject with ValueError."""
    await assert_rejected_before_io(tmp_path, method, args)


# --- Redis specifics --------------------------------------------------------------------------------------

async def test_redis_records_get_ttls(redis_url, sync_redis):
    store = RedisStorage({"r1": redis_url}, limits=Limits(mid_ttl=1000, max_per_key=1), now_ns=Clock())
    try:
        await store.save("k", b"a", 60)
        await store.save("k", b"b", 30)  # a shorter message never shortens a TTL
        await store.save("online", b"c", 0)
    finally:
        await store.close()
    assert 55 <= sync_redis.ttl(MSG_KEY % "k") <= 61
    for record in (MID_KEY % "k", TOP_KEY % "k", TRIM_KEY % "k", MID_KEY % "online"):
        assert 990 <= sync_redis.ttl(record) <= 1000, record
    assert not sync_redis.exists(MSG_KEY % "online")
    assert sync_redis.zcard(MSG_KEY % "k") == 1


async def test_redis_saves_survive_a_flushed_script_cache_and_batch_concurrent_calls(redis_url, sync_redis):
    """A restarted Redis has no scripts: NOSCRIPT replies are answered by loading the script and sending again
    exactly what was refused, so every save lands once."""
    store = RedisStorage({"r1": redis_url}, now_ns=Clock())
    try:
        first = await store.save("k", b"1", 60)
        sync_redis.script_flush()
        mids = await asyncio.gather(*(store.save("k", b"%d" % n, 60) for n in range(50)))
        many = await store.save_many(["a", "b", "c"], b"x", 60)
    finally:
        await store.close()
    assert sorted(mids) == mids and len(set(mids)) == 50 and mids[0] > first
    assert sync_redis.zcard(MSG_KEY % "k") == 51
    assert sorted(many) == ["a", "b", "c"]
    assert sync_redis.script_exists(hashlib.sha1(SAVE_LUA.encode()).hexdigest())[0]


async def test_redis_save_many_fails_only_the_key_whose_records_are_broken(redis_url, sync_redis):
    """One script saves a shard's keys; a key whose save fails inside it (here: its mid record is not a string)
    is left out of the result, and the keys before and after it are saved."""
    sync_redis.hset(MID_KEY % "broken", "x", "1")
    store = RedisStorage({"r1": redis_url}, now_ns=Clock())
    try:
        saved = await store.save_many(["a", "broken", "b"], b"m", 60)
        assert sorted(saved) == ["a", "b"]
        assert (await store.fetch("b", 0)).msgs == [(saved["b"], b"m")]
    finally:
        await store.close()
    assert not sync_redis.exists(MSG_KEY % "broken")


async def test_redis_save_many_of_more_keys_than_one_script_takes(redis_url):
    clock = Clock()
    store = RedisStorage({"r1": redis_url}, now_ns=clock)
    try:
        keys = [f"k{n}" for n in range(SAVE_MANY_CHUNK * 2 + 5)]
        first = await store.save_many(keys, b"1", 60)
        second = await store.save_many(keys, b"2", 60)
        assert sorted(first) == sorted(second) == sorted(keys)
        assert all(second[key] == first[key] + 1 for key in keys)  # the same now: each key's own counter
        assert (await store.fetch(keys[-1], 0)).msgs == [(first[keys[-1]], b"1"), (second[keys[-1]], b"2")]
    finally:
        await store.close()


async def test_redis_set_that_expired_as_a_whole_reports_trimmed(redis_url, sync_redis):
    clock = Clock()
    store = RedisStorage({"r1": redis_url}, now_ns=clock)
    try:
        first = await store.save("k", b"a", 5)
        sync_redis.delete(MSG_KEY % "k")  # what Redis does when the key's EXPIRE fires
        assert (await store.fetch("k", 0)).trimmed
        assert not (await store.fetch("k", first)).trimmed
        newer = await store.save("k", b"b", 5)  # a new set must not hide the lost one
        result = await store.fetch("k", 0)
        assert result.msgs == [(newer, b"b")] and result.trimmed
    finally:
        await store.close()


async def test_redis_shards_spread_keys_and_keep_each_key_in_its_shard(redis_url):
    base = redis_url.rsplit("/", 1)[0]
    urls = {"a": f"{base}/0", "b": f"{base}/1"}
    store = RedisStorage(urls, now_ns=Clock())
    clients = {name: redis.Redis.from_url(url) for name, url in urls.items()}
    try:
        keys = [f"user:{n}" for n in range(40)]
        saved = await store.save_many(keys, b"m", 60)
        assert set(saved) == set(keys)
        homes = {key: store.shard_of(key) for key in keys}
        assert set(homes.values()) == {"a", "b"}
        for key, home in homes.items():
            other = "b" if home == "a" else "a"
            assert clients[home].zcard(MSG_KEY % key) == 1
            assert not clients[other].exists(MSG_KEY % key, MID_KEY % key, TOP_KEY % key)
            assert (await store.fetch(key, 0)).msgs == [(saved[key], b"m")]
    finally:
        await store.close()
        for client in clients.values():
            client.close()


async def test_a_dead_redis_shard_fails_only_its_own_keys(redis_url):
    store = RedisStorage({"live": redis_url, "dead": f"redis://127.0.0.1:{free_port()}/0"}, now_ns=Clock())
    try:
        keys = [f"user:{n}" for n in range(40)]
        on_dead = [key for key in keys if store.shard_of(key) == "dead"]
        assert on_dead and len(on_dead) < len(keys)
        saved = await store.save_many(keys, b"m", 60)
        assert set(saved) == set(keys) - set(on_dead)
        for call in (lambda: store.save(on_dead[0], b"m", 60), lambda: store.fetch(on_dead[0], 0),
                     lambda: store.delete(on_dead[0])):
            with pytest.raises(StorageUnavailable):
                await call()
        assert await store.check_shards() == ["dead"]
    finally:
        await store.close()


# --- SQLite specifics -------------------------------------------------------------------------------------

async def test_sqlite_messages_and_mids_survive_a_restart(tmp_path):
    clock = Clock()
    path = str(tmp_path / "new" / "dir" / "messages.db")
    store = await SqliteStorage.open(path, now_ns=clock)
    first = await store.save("k", b"kept", 60)
    await store.close()
    await store.close()  # idempotent
    store = await SqliteStorage.open(path, now_ns=clock)
    try:
        assert (await store.fetch("k", 0)).msgs == [(first, b"kept")]
        clock.step(-HOUR)
        assert await store.save("k", b"next", 60) == first + 1
    finally:
        await store.close()
    with pytest.raises(StorageUnavailable):
        await store.fetch("k", 0)


async def test_sqlite_sweep_removes_expired_rows_and_marks_them_trimmed(tmp_path):
    clock = Clock()
    store = await SqliteStorage.open(str(tmp_path / "m.db"), now_ns=clock, limits=Limits(mid_ttl=100))
    try:
        gone = await store.save("k", b"a", 5)
        await store.save("idle", b"b", 0)
        clock.step(50)
        await store.sweep()
        result = await store.fetch("k", 0)
        assert result.msgs == [] and result.trimmed
        assert not (await store.fetch("k", gone)).trimmed
        clock.ns = START_NS - HOUR * 1_000_000_000  # the last-mid record (mid_ttl = 100 s) still holds
        assert await store.save("k", b"c", 5) == gone + 1
        clock.ns = START_NS + 1000 * 1_000_000_000  # every record is older than mid_ttl: keys are forgotten
        await store.sweep()
        clock.ns = START_NS - 2 * HOUR * 1_000_000_000
        assert await store.save("idle", b"d", 0) == time_id(clock.ns)
        assert await store.save("k", b"e", 5) == time_id(clock.ns)
    finally:
        await store.close()


async def test_sqlite_unwritable_path_raises_storage_unavailable(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_bytes(b"")
    with pytest.raises(StorageUnavailable):
        await SqliteStorage.open(str(blocker / "messages.db"))
