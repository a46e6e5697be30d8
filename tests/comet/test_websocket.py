"""WebSocket-only behaviour: reply frames, frame types, frame size limit, any Origin."""
import asyncio

import pytest
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed

from comet.protocol import REPLY_OK
from tests.comet.clients import WsSub
from tests.helpers import eventually


def url(node, query):
    return f"ws://{node.addresses['ws'][0]}/sub?{query}"


async def open_ws(node, query, **kwargs):
    return await connect(url(node, query), ping_interval=None, compression=None, proxy=None, close_timeout=1,
                         **kwargs)


async def test_reply_is_one_text_frame_with_the_tcp_bytes(node):
    async with await open_ws(node, "key=w1&heartbeat=30") as ws:
        assert await ws.recv() == "+h\r\n"
        await ws.send("h")
        assert await ws.recv() == "+h\r\n"


async def test_binary_h_is_a_heartbeat_too(node):
    async with await open_ws(node, "key=w2&heartbeat=30") as ws:
        await ws.recv()
        await ws.send(b"h")
        assert await ws.recv() == "+h\r\n"


async def test_error_reply_then_close(node):
    async with await open_ws(node, "key=w3&heartbeat=5") as ws:
        assert await ws.recv() == "-p\r\n"
        with pytest.raises(ConnectionClosed):
            await asyncio.wait_for(ws.recv(), 3)


async def test_non_utf8_and_missing_parameters(node):
    for query in ("key=%FF&heartbeat=30", "heartbeat=30", "key=k", "key=k&heartbeat=30&ver=%FF"):
        async with await open_ws(node, query) as ws:
            assert await ws.recv() == "-p\r\n", query


async def test_oversized_frame_closes_with_1009(start_node):
    node = await start_node(limits={"max_ws_frame": 64})
    async with await open_ws(node, "key=w4&heartbeat=30") as ws:
        await ws.recv()
        await ws.send("h" * 65)
        with pytest.raises(ConnectionClosed) as info:
            await asyncio.wait_for(ws.recv(), 3)
        assert info.value.rcvd is None or info.value.rcvd.code == 1009
    await eventually(lambda: node.table.connection_count == 0)


async def test_any_origin_is_accepted(node):
    async with await open_ws(node, "key=w5&heartbeat=30", origin="https://app.example.com") as ws:
        assert await ws.recv() == "+h\r\n"


async def test_old_and_new_form_frames(node, clients):
    old, _ = await clients.open(WsSub, node, "w6")
    new, _ = await clients.open(WsSub, node, "w6", version="1")
    result = await node.rpc.push_private("w6", b'{"x":"\\u00e9"}', 60)
    assert await old.recv_frame() == b'{"msg":"{\\"x\\":\\"\\\\u00e9\\"}","mid":%d,"gid":0}' % result.mid
    assert await new.recv_frame() == b'{"msg":{"x":"\\u00e9"},"mid":%d,"gid":0}' % result.mid


async def test_heartbeat_reply_constant_matches_tcp():
    assert REPLY_OK == b"+h\r\n"
