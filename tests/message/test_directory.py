"""The tag/alias directory (message/directory*.py): both back ends (RedisDirectory on a real redis-server,
SqliteDirectory in tmp_path), a property against a brute-force evaluation of random expressions, the bounded
Redis walk, hostile input, and the five MessageRPC methods over a real MessageNode."""
import asyncio
import random
import uuid

import pytest
import redis
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from message.client import MessageNodeInfo, MessagePool
from message.directory import (DirectoryLimits, InvalidArgument, check_alias, check_expr, check_page, check_tag,
                               check_tags)
from message.directory_redis import SET_TAGS, RedisDirectory, directory_shard
from message.directory_sqlite import SqliteDirectory
from message.storage import StorageUnavailable
from tests.helpers import free_port
from tests.message.conftest import assert_param_error, raw_rpc
from thirdparty.rpc_client import RemoteError
from thirdparty.rpc_codec import ERR_INTERNAL


async def open_directory(backend, where, **options):
    if backend == "redis":
        return RedisDirectory({"r1": where}, **options)
    return await SqliteDirectory.open(str(where / f"{uuid.uuid4().hex}.db"), **options)


@pytest.fixture(params=["redis", "sqlite"])
async def make_dir(request, tmp_path):
    """``await make_dir(**options)`` opens a directory of the parametrized back end; all are closed after."""
    backend = request.param
    where = request.getfixturevalue("redis_url") if backend == "redis" else tmp_path
    opened = []

    async def make(**options):
        if backend == "sqlite":
            options.pop("scan_budget", None)
            options.pop("scan_chunk", None)
        directory = await open_directory(backend, where, **options)
        opened.append(directory)
        return directory

    yield make
    for directory in opened:
        await directory.close()


async def all_pages(directory, expr, count):
    """Every key of ``expr``, paging ``count`` at a time; checks the paging contract on the way."""
    keys, after, calls = [], "", 0
    while True:
        page = await directory.tag_keys(expr, after, count)
        calls += 1
        assert len(page.keys) <= count
        assert all(key > after for key in page.keys)
        assert page.keys == sorted(set(page.keys))
        keys += page.keys
        if page.next is None:
            return keys, calls
        assert page.next > after, "every call makes progress"
        if len(page.keys) == count:
            assert page.next == page.keys[-1]
        after = page.next
        assert calls < 10_000


def brute_force(assignment, expr):
    """The keys of ``assignment`` ({key: set of tags}) matching ``expr``, in byte order."""
    return sorted(key for key, tags in assignment.items() if any(set(group) <= tags for group in expr))


# --- tags, aliases, key_info --------------------------------------------------------------------------------

async def test_tags_are_replaced_cleared_and_sorted(make_dir):
    directory = await make_dir()
    assert await directory.set_tags("u1", ["staff", "beta", "android", "beta"]) == ["android", "beta", "staff"]
    assert (await directory.key_info("u1")).tags == ["android", "beta", "staff"]
    assert await directory.set_tags("u1", ["ios", "beta"]) == ["beta", "ios"]
    info = await directory.key_info("u1")
    assert (info.tags, info.alias) == (["beta", "ios"], None)
    assert (await directory.tag_keys([["android"]], "", 10)).keys == []
    assert (await directory.tag_keys([["ios"]], "", 10)).keys == ["u1"]
    assert await directory.set_tags("u1", []) == []
    assert (await directory.key_info("u1")).tags == []
    assert (await directory.tag_keys([["beta"], ["ios"]], "", 10)).keys == []
    unknown = await directory.key_info("nobody")
    assert (unknown.tags, unknown.alias) == ([], None)


async def test_an_alias_moves_replaces_and_is_removed(make_dir):
    directory = await make_dir()
    change = await directory.set_alias("k1", "alice")
    assert (change.alias, change.moved_from, change.replaced) == ("alice", None, None)
    again = await directory.set_alias("k1", "alice")
    assert (again.alias, again.moved_from, again.replaced) == ("alice", None, None)
    moved = await directory.set_alias("k2", "alice")          # alice names exactly one key: it moves
    assert (moved.alias, moved.moved_from, moved.replaced) == ("alice", "k1", None)
    assert await directory.alias_key("alice") == "k2"
    assert (await directory.key_info("k1")).alias is None
    replaced = await directory.set_alias("k2", "bob")         # a key has at most one alias: bob replaces alice
    assert (replaced.alias, replaced.moved_from, replaced.replaced) == ("bob", None, "alice")
    assert await directory.alias_key("alice") is None
    assert await directory.alias_key("bob") == "k2"
    await directory.set_alias("k1", "carol")
    both = await directory.set_alias("k1", "bob")             # moves bob from k2 and replaces k1's carol
    assert (both.alias, both.moved_from, both.replaced) == ("bob", "k2", "carol")
    assert (await directory.key_info("k2")).alias is None
    assert await directory.alias_key("carol") is None
    removed = await directory.set_alias("k1", "")
    assert (removed.alias, removed.moved_from, removed.replaced) == (None, None, "bob")
    assert await directory.alias_key("bob") is None
    nothing = await directory.set_alias("k1", "")
    assert (nothing.alias, nothing.moved_from, nothing.replaced) == (None, None, None)


async def test_utf8_keys_tags_and_aliases_sort_by_bytes(make_dir):
    directory = await make_dir()
    keys = ["zeta", "Zeta", "é", "ü:1", "日本", "a b", "a", "😀", "~"]
    for key in keys:
        await directory.set_tags(key, ["ünïcode", "t"])
    expected = sorted(keys, key=lambda key: key.encode("utf-8"))
    assert expected == sorted(keys)                 # str order is UTF-8 byte order
    assert (await directory.tag_keys([["ünïcode", "t"]], "", 1000)).keys == expected
    assert (await all_pages(directory, [["t"]], 2))[0] == expected
    await directory.set_alias("日本", "名前")
    assert await directory.alias_key("名前") == "日本"


# --- expressions and paging -----------------------------------------------------------------------------------

async def test_overlapping_groups_are_a_union_of_intersections(make_dir):
    directory = await make_dir()
    combos = {"n": [], "a": ["a"], "b": ["b"], "c": ["c"], "ab": ["a", "b"], "ac": ["a", "c"], "bc": ["b", "c"],
              "abc": ["a", "b", "c"]}
    assignment = {}
    for copy in range(3):
        for name, tags in combos.items():
            key = f"{name}-{copy}"
            await directory.set_tags(key, tags)
            assignment[key] = set(tags)
    for expr in ([["a", "b"], ["c"]], [["a"], ["b"]], [["a", "b", "c"]], [["c"], ["a", "b"], ["b", "a"]],
                 [["a", "a"]], [["missing"], ["a", "missing"]], [["a", "b"], ["a", "c"], ["b", "c"]]):
        want = brute_force(assignment, expr)
        assert (await directory.tag_keys(expr, "", 1000)).keys == want, expr
        for count in (1, 2, 3, 5):
            assert (await all_pages(directory, expr, count))[0] == want, (expr, count)


async def test_paging_from_any_cursor_returns_the_next_keys(make_dir):
    directory = await make_dir()
    keys = [f"user:{n:03d}" for n in range(40)]
    for key in keys:
        await directory.set_tags(key, ["all", "even" if int(key[-3:]) % 2 == 0 else "odd"])
    for count in (1, 3, 7, 40, 1000):
        got, calls = await all_pages(directory, [["all"]], count)
        assert got == keys
        assert calls <= len(keys) // count + 2
    page = await directory.tag_keys([["odd"], ["even"]], "user:010", 5)
    assert (page.keys, page.next) == (keys[11:16], "user:015")
    page = await directory.tag_keys([["all"]], "user:0105", 2)   # a cursor that is no key
    assert page.keys == ["user:011", "user:012"]
    last = await directory.tag_keys([["all"]], "user:037", 5)
    assert (last.keys, last.next) == (keys[38:], None)
    assert await directory.tag_keys([["all"]], "user:039", 5) == type(last)([], None)


async def test_redis_bounds_the_walk_and_continues_from_the_cursor(redis_url):
    """Tags a and b each have 600 keys, and only 3 share both: a walk of a small budget returns short pages
    with a cursor, never a wrong one, and reaches all 3."""
    directory = RedisDirectory({"r1": redis_url}, scan_budget=50, scan_chunk=16)
    client = redis.Redis.from_url(redis_url)
    try:
        pipe = client.pipeline(transaction=False)
        for n in range(600):
            pipe.zadd("push:dir:tag:a", {f"a{n:04d}": 0})
            pipe.zadd("push:dir:tag:b", {f"b{n:04d}": 0})
        pipe.execute()
        for key in ("a0100", "a0599", "b0300"):
            await directory.set_tags(key, ["a", "b"])
        first = await directory.tag_keys([["a", "b"]], "", 10)
        assert first.keys == [] and first.next is not None   # short, but not the end
        keys, calls = await all_pages(directory, [["a", "b"]], 10)
        assert keys == ["a0100", "a0599", "b0300"]
        assert calls > 10
        unbounded = RedisDirectory({"r1": redis_url})
        try:
            assert (await unbounded.tag_keys([["a", "b"]], "", 10)) == type(first)(keys, None)
        finally:
            await unbounded.close()
    finally:
        client.close()
        await directory.close()


TAGS = ["a", "b", "c", "d"]
KEYS = ["k0", "k1", "k10", "k2", "x", "é", "K", "k1 "]
expressions = st.lists(st.lists(st.sampled_from(TAGS), min_size=1, max_size=3), min_size=1, max_size=4)
assignments = st.dictionaries(st.sampled_from(KEYS), st.sets(st.sampled_from(TAGS), max_size=4), max_size=8)


@pytest.mark.parametrize("backend", ["redis", "sqlite"])
@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(assignment=assignments, expr=expressions, count=st.integers(1, 4), budget=st.integers(1, 12),
       chunk=st.integers(1, 4))
def test_property_every_expression_matches_brute_force(backend, request, tmp_path_factory, assignment, expr, count,
                                                       budget, chunk):
    """Random tags on random keys (set, then partly overwritten), random expressions, small pages and (Redis)
    tiny work budgets: the pages together are exactly the brute-force answer, in order, each key once."""
    if backend == "redis":
        url = request.getfixturevalue("redis_server")
        client = redis.Redis.from_url(url)
        client.flushdb()
        client.close()
        where, options = url, {"scan_budget": budget, "scan_chunk": chunk}
    else:
        where, options = tmp_path_factory.mktemp("directory"), {}

    async def check():
        directory = await open_directory(backend, where, **options)
        try:
            for key in assignment:                 # first every key gets every tag, then its own set
                await directory.set_tags(key, TAGS)
            for key, tags in assignment.items():
                assert await directory.set_tags(key, sorted(tags)) == sorted(tags)
            want = brute_force(assignment, expr)
            assert (await all_pages(directory, expr, count))[0] == want
            page = await directory.tag_keys(expr, "", 1000)
            if backend == "sqlite" or budget * chunk >= 1000:
                assert page.keys == want
        finally:
            await directory.close()

    asyncio.run(check())


# --- limits and hostile input -------------------------------------------------------------------------------

def test_checks_accept_the_limits_and_refuse_one_more():
    limits = DirectoryLimits()
    check_tag("t" * 64, limits)
    check_tag("é" * 32, limits)
    for bad in ("", "t" * 65, "é" * 33, "a b", "a,b", "a\tb", "a\x00", "a\x7f", "a\x85", "a\u2028", "a\u3000",
                "\ud800", 5, None, b"tag"):
        with pytest.raises(InvalidArgument):
            check_tag(bad, limits)
        with pytest.raises(InvalidArgument):
            check_alias(bad, limits)
    assert check_tags("k", [f"t{n}" for n in range(64)], limits)[0] == "t0"
    with pytest.raises(InvalidArgument):
        check_tags("k", [f"t{n}" for n in range(65)], limits)
    assert check_expr([["a"]] * 16 + [], limits) == [["a"]]
    check_expr([[f"t{n}" for n in range(8)] for _ in range(16)], limits)
    assert check_expr([["a", "b", "a"], ["c"], ["a", "b"]], limits) == [["a", "b"], ["c"]]
    check_page("", 1, limits)
    check_page("k", 1000, limits)


BAD_CALLS = [
    ("set_tags", ("", ["t"])),
    ("set_tags", ("k\n", ["t"])),
    ("set_tags", ("k" * 129, ["t"])),
    ("set_tags", (7, ["t"])),
    ("set_tags", ("k", "t")),
    ("set_tags", ("k", None)),
    ("set_tags", ("k", ["ok", ""])),
    ("set_tags", ("k", ["ok", "a b"])),
    ("set_tags", ("k", ["ok", "a,b"])),
    ("set_tags", ("k", ["ok", "x" * 65])),
    ("set_tags", ("k", ["ok", 5])),
    ("set_tags", ("k", [f"t{n}" for n in range(65)])),
    ("set_alias", ("k", "a b")),
    ("set_alias", ("k", "a\x1b[31m")),
    ("set_alias", ("k", "x" * 65)),
    ("set_alias", ("k", None)),
    ("set_alias", ("", "alias")),
    ("key_info", ("",)),
    ("key_info", (["k"],)),
    ("alias_key", ("",)),
    ("alias_key", ("a,b",)),
    ("tag_keys", ([], "", 10)),
    ("tag_keys", ([[]], "", 10)),
    ("tag_keys", ("a", "", 10)),
    ("tag_keys", (["a"], "", 10)),
    ("tag_keys", ([["a"], "b"], "", 10)),
    ("tag_keys", ([["a", None]], "", 10)),
    ("tag_keys", ([["a b"]], "", 10)),
    ("tag_keys", ([["a"]] * 17, "", 10)),
    ("tag_keys", ([[f"t{n}" for n in range(9)]], "", 10)),
    ("tag_keys", ([["a"]], None, 10)),
    ("tag_keys", ([["a"]], "k\x00", 10)),
    ("tag_keys", ([["a"]], "", 0)),
    ("tag_keys", ([["a"]], "", 1001)),
    ("tag_keys", ([["a"]], "", "10")),
    ("tag_keys", ([["a"]], "", True)),
]


@pytest.mark.parametrize("method, args", BAD_CALLS)
async def test_bad_arguments_are_refused_and_change_nothing(make_dir, method, args):
    directory = await make_dir()
    await directory.set_tags("k", ["a", "b"])
    await directory.set_alias("k", "alias")
    with pytest.raises(InvalidArgument):
        await getattr(directory, method)(*args)
    info = await directory.key_info("k")
    assert (info.tags, info.alias) == (["a", "b"], "alias")
    assert (await directory.tag_keys([["a"]], "", 10)).keys == ["k"]


async def test_largest_accepted_inputs(make_dir):
    directory = await make_dir()
    tags = [f"{n:02d}" + "t" * 62 for n in range(64)]
    assert await directory.set_tags("k" * 128, tags) == tags
    assert (await directory.set_alias("k" * 128, "é" * 32)).alias == "é" * 32
    expr = [tags[group * 4:group * 4 + 8] for group in range(16)]
    assert (await directory.tag_keys(expr, "", 1000)).keys == ["k" * 128]


# --- Redis specifics ----------------------------------------------------------------------------------------

async def test_redis_layout_lives_on_the_ring_shard_of_push_dir(redis_url):
    urls = {f"s{n}": redis_url[:-1] + str(n) for n in range(4)}   # four databases of one server, as four shards
    shard = directory_shard(urls)
    directory = RedisDirectory(urls)
    try:
        await directory.set_tags("u1", ["beta", "staff"])
        await directory.set_alias("u1", "alice")
    finally:
        await directory.close()
    for name, url in urls.items():
        client = redis.Redis.from_url(url, decode_responses=True)
        try:
            if name != shard:
                assert client.dbsize() == 0
                continue
            assert client.smembers("push:dir:ktags:u1") == {"beta", "staff"}
            assert client.zrange("push:dir:tag:beta", 0, -1, withscores=True) == [("u1", 0.0)]
            assert client.get("push:dir:alias:alice") == "u1"
            assert client.get("push:dir:kalias:u1") == "alice"
            assert client.ttl("push:dir:tag:beta") == -1      # no expiry
        finally:
            client.close()


async def test_redis_survives_a_flushed_script_cache_and_a_down_server_is_unavailable(redis_url):
    directory = RedisDirectory({"r1": redis_url})
    client = redis.Redis.from_url(redis_url)
    try:
        await directory.set_tags("k", ["a"])
        client.script_flush()
        assert not client.script_exists(SET_TAGS.sha)[0]
        assert await directory.set_tags("k", ["b"]) == ["b"]
    finally:
        client.close()
        await directory.close()
    broken = RedisDirectory({"r1": redis_url})
    client = redis.Redis.from_url(redis_url)
    try:   # records of the wrong type (someone wrote there by hand): the call fails, it returns no garbage
        client.set("push:dir:ktags:k", "x")
        client.hset("push:dir:alias:a", "f", "v")
        client.set("push:dir:tag:t", "x")
        for call in (broken.set_tags("k", ["a"]), broken.key_info("k"), broken.alias_key("a"),
                     broken.tag_keys([["t"]], "", 10)):
            with pytest.raises(StorageUnavailable):
                await call
    finally:
        client.close()
        await broken.close()
    dead = RedisDirectory({"r1": f"redis://127.0.0.1:{free_port()}/0"}, timeout=0.5)
    try:
        for call in (dead.set_tags("k", ["a"]), dead.set_alias("k", "a"), dead.key_info("k"), dead.alias_key("a"),
                     dead.tag_keys([["a"]], "", 10)):
            with pytest.raises(StorageUnavailable):
                await call
    finally:
        await dead.close()


# --- over a real MessageNode ----------------------------------------------------------------------------------

@pytest.fixture(params=["redis", "sqlite"])
async def node_storage(request, tmp_path):
    if request.param == "redis":
        return {"redis": {"r1": request.getfixturevalue("redis_url")}}
    return {"backend": "sqlite", "sqlite_path": str(tmp_path / "data" / "messages.db")}


async def test_rpc_methods_over_a_real_node(start_node, node_storage):
    node, client = await start_node(node_storage)
    assert await client.set_tags("u1", ["staff", "beta", "android"]) == ["android", "beta", "staff"]
    assert await client.set_tags("u2", ("beta", "android")) == ["android", "beta"]
    assert await client.set_tags("u3", ["staff"]) == ["staff"]
    assert await client.set_alias("u1", "alice") == {"alias": "alice", "moved_from": None, "replaced": None}
    assert await client.set_alias("u2", "alice") == {"alias": "alice", "moved_from": "u1", "replaced": None}
    assert await client.key_info("u2") == {"tags": ["android", "beta"], "alias": "alice"}
    assert await client.key_info("u1") == {"tags": ["android", "beta", "staff"], "alias": None}
    assert await client.alias_key("alice") == "u2"
    assert await client.alias_key("nobody") is None
    expr = [["beta", "android"], ["staff"]]
    assert await client.tag_keys(expr, "", 1000) == (["u1", "u2", "u3"], None)
    assert await client.tag_keys(expr, "", 2) == (["u1", "u2"], "u2")
    assert await client.tag_keys(expr, "u2", 2) == (["u3"], None)
    assert await client.set_alias("u2", "") == {"alias": None, "moved_from": None, "replaced": "alice"}
    assert await client.set_tags("u3", []) == []
    assert await client.tag_keys([("staff",)], "", 10) == (["u1"], None)
    if node_storage.get("backend") == "sqlite":
        assert node.directory is not None and node.directory.path.endswith("data/directory.db")


async def test_rpc_overlapping_tags_match_brute_force_page_by_page(start_node, node_storage):
    _, client = await start_node(node_storage)
    rng = random.Random(3)
    assignment = {}
    for n in range(60):
        key = f"user:{rng.randrange(1000):03d}"
        tags = {tag for tag in ("a", "b", "c", "d") if rng.random() < 0.4}
        assignment[key] = tags
        assert await client.set_tags(key, sorted(tags)) == sorted(tags)
    for expr in ([["a", "b"], ["c"]], [["a", "b", "c"]], [["d"], ["a", "c"], ["b"]], [["a"], ["b"], ["c"], ["d"]]):
        want = brute_force(assignment, expr)
        for count in (1, 4, 1000):
            keys, after = [], ""
            while True:
                page, after = await client.tag_keys(expr, after, count)
                keys += page
                if after is None:
                    break
            assert keys == want, (expr, count)


@pytest.mark.parametrize("method, params", [
    ("SetTags", ["", ["t"]]),
    ("SetTags", ["k", "t"]),
    ("SetTags", ["k", ["a b"]]),
    ("SetTags", ["k", [f"t{n}" for n in range(65)]]),
    ("SetTags", ["k"]),
    ("SetAlias", ["k", "a,b"]),
    ("SetAlias", ["k", 5]),
    ("KeyInfo", [None]),
    ("AliasKey", [""]),
    ("TagKeys", [[["a"]] * 17, "", 10]),
    ("TagKeys", [[["a"], "b"], "", 10]),
    ("TagKeys", [[["a"]], "", 1001]),
    ("TagKeys", [[["a"]], "\x00", 10]),
    ("TagKeys", [[["a"]], ""]),
])
async def test_rpc_bad_params_get_65534_and_change_nothing(start_node, redis_url, method, params):
    node, client = await start_node({"redis": {"r1": redis_url}})
    await client.set_tags("k", ["a"])
    await client.set_alias("k", "alias")
    async with raw_rpc(node.config.rpc.bind) as raw:
        await assert_param_error(raw, method, params)
    assert await client.key_info("k") == {"tags": ["a"], "alias": "alias"}


async def test_rpc_redis_down_gives_65535(start_node):
    _, client = await start_node({"redis": {"r1": f"redis://127.0.0.1:{free_port()}/0"}, "redis_timeout": 0.5})
    for call in (client.set_tags("k", ["a"]), client.set_alias("k", "a"), client.key_info("k"),
                 client.alias_key("a"), client.tag_keys([["a"]], "", 10)):
        with pytest.raises(RemoteError) as info:
            await call
        assert (info.value.code, info.value.message) == (ERR_INTERNAL, "storage unavailable")
    await client.ping()


async def test_pool_repeats_directory_calls_on_another_node(start_node, redis_url):
    node, _ = await start_node({"redis": {"r1": redis_url}})
    dead = MessageNodeInfo(rpc=f"127.0.0.1:{free_port()}", weight=1000)
    pool = MessagePool([dead, MessageNodeInfo(rpc=node.config.rpc.bind)], timeout=2.0, rng=random.Random(7))
    try:
        for n in range(5):   # the dead node is chosen first nearly always; every call still succeeds
            assert await pool.set_tags(f"k{n}", ["t"]) == ["t"]
        assert await pool.set_alias("k0", "alias") == {"alias": "alias", "moved_from": None, "replaced": None}
        assert await pool.key_info("k0") == {"tags": ["t"], "alias": "alias"}
        assert await pool.alias_key("alias") == "k0"
        assert await pool.tag_keys([["t"]], "k2", 10) == (["k3", "k4"], None)
    finally:
        await pool.close()
