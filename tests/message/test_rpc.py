"""A real MessageNode on a free port, over real Redis (and SQLite), called by a real MessageClient."""
import functools

import pytest

from message.__main__ import main
from message.client import FetchResult, MessageClient
from message.config import load
from message.mid import time_id
from message.node import MessageNode
from thirdparty.rpc_client import RemoteError, RpcUnavailable
from thirdparty.rpc_codec import ERR_INTERNAL
from tests.helpers import free_port
from tests.message.conftest import assert_param_error, raw_rpc

NOW_NS = 1_700_000_000_000_000_000


def make_config(storage, **rpc):
    return load(None, overrides={"rpc": {"bind": f"127.0.0.1:{free_port()}", **rpc}, "storage": storage})


@pytest.fixture
def start_node(start_node):
    """The conftest's ``start_node`` with the node's clock frozen at NOW_NS."""
    return functools.partial(start_node, now_ns=lambda: NOW_NS)


@pytest.fixture(params=["redis", "sqlite"])
async def client(request, start_node, tmp_path):
    if request.param == "redis":
        storage = {"redis": {"r1": request.getfixturevalue("redis_url")}}
    else:
        storage = {"backend": "sqlite", "sqlite_path": str(tmp_path / "messages.db")}
    _, client = await start_node(storage)
    return client


async def test_every_method(client):
    await client.ping()
    first = await client.save_private("k", b'{"n":1}', 600)
    assert first == time_id(NOW_NS)
    assert await client.save_private("k", b'{"n":0}', 0) == first + 1  # online only: a mid, nothing stored
    saved = await client.save_privates(["k", "u2", "u3", "u2"], b'{"all":1}', 600)
    assert saved == {"k": first + 2, "u2": first, "u3": first}
    result = await client.get_private("k", 0)
    assert result == FetchResult([(first, b'{"n":1}'), (first + 2, b'{"all":1}')], False)
    assert (await client.get_private("k", first)).msgs == [(first + 2, b'{"all":1}')]
    assert await client.get_private("nobody", 0) == FetchResult([], False)
    assert await client.del_private("k") == 2
    assert await client.get_private("k", 0) == FetchResult([], False)
    assert await client.save_private("k", b"{}", 600) == first + 3


@pytest.mark.parametrize("method, params", [
    ("SavePrivate", ["", b"m", 60]),
    ("SavePrivate", [7, b"m", 60]),
    ("SavePrivate", ["k", None, 60]),
    ("SavePrivate", ["k", b"m" * 65537, 60]),
    ("SavePrivate", ["k", b"m", "60"]),
    ("SavePrivate", ["k", b"m", True]),
    ("SavePrivate", ["k", b"m", -1]),
    ("SavePrivate", ["k", b"m"]),                 # wrong param count
    ("SavePrivates", ["k", b"m", 60]),            # keys not a list
    ("SavePrivates", [["k", 1], b"m", 60]),
    ("SavePrivates", [["k"] * 1001, b"m", 60]),
    ("GetPrivate", ["k", -1]),
    ("GetPrivate", ["k", "0"]),
    ("GetPrivate", ["k", 1 << 63]),
    ("DelPrivate", [""]),
    ("DelPrivate", [["k"]]),
    ("Nope", []),
])
async def test_bad_params_get_65534_and_the_node_keeps_serving(start_node, redis_url, method, params):
    node, client = await start_node({"redis": {"r1": redis_url}})
    async with raw_rpc(node.config.rpc.bind) as raw:
        await assert_param_error(raw, method, params)
        assert await raw.call("MessageRPC.Ping") == "pong"
    assert await client.save_private("k", b"ok", 60) > 0


async def test_a_str_message_is_stored_as_utf8(client):
    async with raw_rpc(client.address) as raw:
        mid = await raw.call("MessageRPC.SavePrivate", "k", '{"t":"é"}', 60)
    assert (await client.get_private("k", 0)).msgs == [(mid, '{"t":"é"}'.encode())]


async def test_unreachable_redis_gives_65535_and_save_privates_leaves_out_its_keys(start_node, redis_url):
    dead = f"redis://127.0.0.1:{free_port()}/0"
    _, client = await start_node({"redis": {"live": redis_url, "dead": dead}})
    keys = [f"user:{n}" for n in range(30)]
    saved = await client.save_privates(keys, b"m", 60)
    assert saved and len(saved) < len(keys)
    failed = [key for key in keys if key not in saved]
    with pytest.raises(RemoteError) as info:
        await client.save_private(failed[0], b"m", 60)
    assert (info.value.code, info.value.message) == (ERR_INTERNAL, "storage unavailable")
    with pytest.raises(RemoteError):
        await client.get_private(failed[0], 0)
    assert (await client.get_private(next(iter(saved)), 0)).msgs != []


async def test_a_large_backlog_is_returned_oldest_first_in_bounded_replies(start_node, redis_url):
    _, client = await start_node({"redis": {"r1": redis_url}}, max_fetch_bytes=100_000)
    payload = b"x" * 30_000
    mids = [await client.save_private("k", payload, 60) for _ in range(8)]
    got, after = [], 0
    while True:
        result = await client.get_private("k", after)
        if not result.msgs:
            break
        assert len(result.msgs) <= 3
        got += [mid for mid, _ in result.msgs]
        after = got[-1]
    assert got == mids


async def test_a_stopped_node_is_unavailable_not_a_hang(redis_url):
    config = make_config({"redis": {"r1": redis_url}})
    node = MessageNode(config)
    await node.start()
    client = MessageClient(config.rpc.bind, timeout=2.0)
    try:
        await client.ping()
        await node.stop()
        with pytest.raises(RpcUnavailable):
            await client.ping()
    finally:
        await client.close()


def test_main_refuses_a_bad_config(tmp_path):
    path = tmp_path / "message.conf"
    path.write_text('[storage]\nbackend = "memcached"\n')
    assert main(["-c", str(path)]) == 2
    assert main(["-c", str(tmp_path / "missing.conf")]) == 2
