"""The WebSocket transport byte for byte over raw sockets: handshake, control frames, close codes, HTTP errors;
and tornado's client as a second, independent WebSocket implementation."""
import asyncio
import struct

import pytest
from tornado.websocket import websocket_connect
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed

from comet.ws_frames import OP_BINARY, OP_CLOSE, OP_CONTINUATION, OP_PING, OP_TEXT
from comet.ws_handshake import accept_value
from tests.comet.clients import TIMEOUT, client_frame, raw_connection, ws_query
from tests.helpers import eventually

KEY = "dGhlIHNhbXBsZSBub25jZQ=="


def upgrade(path, extra=""):
    return (f"GET {path} HTTP/1.1\r\nHost: comet\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
            f"Sec-WebSocket-Key: {KEY}\r\nSec-WebSocket-Version: 13\r\n{extra}\r\n").encode()


async def read_frame(reader):
    """(opcode, payload) of one server frame; server frames are never masked."""
    first, second = await asyncio.wait_for(reader.readexactly(2), TIMEOUT)
    assert first & 0x80 and not second & 0x80
    size = second & 0x7F
    if size == 126:
        size = struct.unpack(">H", await reader.readexactly(2))[0]
    elif size == 127:
        size = struct.unpack(">Q", await reader.readexactly(8))[0]
    return first & 0x0F, await asyncio.wait_for(reader.readexactly(size), TIMEOUT)


@pytest.fixture
async def raw_ws(node):
    """``await raw_ws(query, extra_headers="", first=b"")`` -> (reader, writer, 101 head) after the reply frame."""
    opened = []

    async def open_raw(query="key=r1&heartbeat=30", extra="", first=b""):
        reader, writer = await raw_connection(node.addresses["ws"][0])
        opened.append(writer)
        writer.write(upgrade(f"/sub?{query}", extra) + first)
        head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), TIMEOUT)
        return reader, writer, head

    yield open_raw
    for writer in opened:
        writer.close()
        try:
            await writer.wait_closed()
        except OSError:
            pass


async def test_101_response_without_extensions_even_when_offered(raw_ws):
    reader, _, head = await raw_ws(extra="Sec-WebSocket-Extensions: permessage-deflate; client_max_window_bits\r\n"
                                         "Sec-WebSocket-Protocol: chat\r\n")
    assert head == (b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                    b"Sec-WebSocket-Accept: " + accept_value(KEY).encode() + b"\r\n\r\n")
    assert await read_frame(reader) == (OP_TEXT, b"+h\r\n")


async def test_heartbeat_sent_with_the_upgrade_request_and_fragmented(raw_ws):
    reader, writer, _ = await raw_ws(first=client_frame(OP_TEXT, b"h"))
    assert await read_frame(reader) == (OP_TEXT, b"+h\r\n")
    assert await read_frame(reader) == (OP_TEXT, b"+h\r\n")
    writer.write(client_frame(OP_BINARY, b"", fin=False) + client_frame(OP_CONTINUATION, b"h"))
    assert await read_frame(reader) == (OP_TEXT, b"+h\r\n")


async def test_ping_is_answered_with_pong(raw_ws):
    reader, writer, _ = await raw_ws()
    await read_frame(reader)
    writer.write(client_frame(OP_PING, b"are you there"))
    assert await read_frame(reader) == (0xA, b"are you there")


@pytest.mark.parametrize("frame, code", [
    (client_frame(OP_TEXT, b"h", mask=None), 1002),
    (client_frame(OP_TEXT, b"h", rsv=0x40), 1002),
    (client_frame(OP_TEXT, b"hello"), 1008),
    (client_frame(OP_TEXT, b"h" * 4097), 1009),
])
async def test_bad_frames_close_with_their_code(node, raw_ws, frame, code):
    reader, writer, _ = await raw_ws()
    await read_frame(reader)
    writer.write(frame)
    opcode, payload = await read_frame(reader)
    assert (opcode, struct.unpack(">H", payload[:2])[0]) == (OP_CLOSE, code)
    writer.write(client_frame(OP_CLOSE, payload[:2]))  # answer: the server closes the TCP connection
    assert await asyncio.wait_for(reader.read(), TIMEOUT) == b""
    await eventually(lambda: node.table.connection_count == 0)


async def test_client_close_is_echoed_then_closed(node, raw_ws):
    reader, writer, _ = await raw_ws()
    await read_frame(reader)
    writer.write(client_frame(OP_CLOSE, struct.pack(">H", 4000) + b"bye"))
    assert await read_frame(reader) == (OP_CLOSE, struct.pack(">H", 4000))
    assert await asyncio.wait_for(reader.read(), TIMEOUT) == b""
    await eventually(lambda: node.stats.closes["client closed"] == 1)


async def test_refused_subscribe_reply_then_close_1000(raw_ws):
    reader, _, head = await raw_ws("key=r2&heartbeat=1")
    assert head.startswith(b"HTTP/1.1 101 ")
    assert await read_frame(reader) == (OP_TEXT, b"-p\r\n")
    assert await read_frame(reader) == (OP_CLOSE, struct.pack(">H", 1000) + b"subscribe refused")


@pytest.mark.parametrize("request_bytes, status", [
    (upgrade("/nowhere"), 404),
    (upgrade("/sub?key=k&heartbeat=30").replace(b"GET", b"PUT"), 405),
    (upgrade("/sub?key=k&heartbeat=30").replace(b"Version: 13", b"Version: 99"), 426),
    (b"GET /sub?key=k&heartbeat=30 HTTP/1.1\r\nHost: x\r\n\r\n", 400),
    (b"GET /sub?token=" + b"t" * 70_000, 431),
], ids=["404", "405", "426", "400", "431"])
async def test_http_errors_then_close(node, request_bytes, status):
    reader, writer = await raw_connection(node.addresses["ws"][0])
    try:
        writer.write(request_bytes)
        response = await asyncio.wait_for(reader.read(), TIMEOUT)  # the server closes after the response
        assert response.startswith(b"HTTP/1.1 %d " % status)
    finally:
        writer.close()
        await writer.wait_closed()
    assert node.table.connection_count == 0


async def test_stop_sends_1001(start_node):
    node = await start_node()
    ws = await connect(f"ws://{node.addresses['ws'][0]}{ws_query('bye', 30, None, None)}", ping_interval=None,
                       proxy=None, close_timeout=1)
    assert await ws.recv() == "+h\r\n"
    await node.stop()
    with pytest.raises(ConnectionClosed) as info:
        await asyncio.wait_for(ws.recv(), TIMEOUT)
    assert info.value.rcvd is not None and info.value.rcvd.code == 1001


async def test_tornado_client_subscribes_and_receives(node):
    ws = await websocket_connect(f"ws://{node.addresses['ws'][0]}{ws_query('tor', 30, None, '1')}")
    try:
        assert await asyncio.wait_for(ws.read_message(), TIMEOUT) == "+h\r\n"
        await ws.write_message("h")
        assert await asyncio.wait_for(ws.read_message(), TIMEOUT) == "+h\r\n"
        result = await node.rpc.push_private("tor", b'{"n":1}', 0)
        assert await asyncio.wait_for(ws.read_message(), TIMEOUT) == '{"msg":{"n":1},"mid":%d,"gid":0}' % result.mid
    finally:
        ws.close()
    await eventually(lambda: node.table.connection_count == 0)
