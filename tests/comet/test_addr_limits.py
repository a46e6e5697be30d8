"""Per-source-address limits over real sockets: the extra connection is refused at connect and counted, other
addresses and the connections already open are not affected. 127.0.0.2 is a second loopback source address.
"""
from __future__ import annotations

import asyncio
import struct

from comet.protocol import REPLY_OK
from comet.ws_frames import CLOSE_POLICY_VIOLATION, OP_TEXT
from tests.comet.clients import TIMEOUT, TcpSub, WsSub, client_frame, raw_connection, sub_args, sub_command, \
    ws_handshake, ws_query
from tests.helpers import eventually

MSG = b'{"n":1}'
OTHER_SOURCE = "127.0.0.2"
NO_EXEMPTION = {"addr_limit_exempt": []}


async def connect_from(node, proto: str, source: str = "127.0.0.1"):
    host, port = node.addresses[proto][0].rsplit(":", 1)
    return await asyncio.open_connection(host, int(port), local_addr=(source, 0))


async def subscribe_from(node, proto: str, key: str, source: str = "127.0.0.1"):
    """A raw subscribed connection from ``source``; returns (reader, writer) after the +h."""
    reader, writer = await connect_from(node, proto, source)
    if proto == "tcp":
        writer.write(sub_command(*sub_args(key, 30, None, "1")))
        assert await asyncio.wait_for(reader.readexactly(4), TIMEOUT) == REPLY_OK
    else:
        writer.write(ws_handshake(node.addresses["ws"][0], ws_query(key, 30, None, "1")))
        head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), TIMEOUT)
        assert head.startswith(b"HTTP/1.1 101"), head
        assert await asyncio.wait_for(reader.readexactly(6), TIMEOUT) == b"\x81\x04+h\r\n"
    return reader, writer


async def assert_refused_at_connect(node, proto: str, source: str = "127.0.0.1") -> None:
    """The comet closes the connection unanswered, whatever the client sends."""
    reader, writer = await connect_from(node, proto, source)
    try:
        writer.write(sub_command(*sub_args("k", 30, None, None)) if proto == "tcp"
                     else ws_handshake(node.addresses["ws"][0], ws_query("k", 30, None, None)))
        try:
            assert await asyncio.wait_for(reader.read(), TIMEOUT) == b""
        except ConnectionResetError:
            pass  # the comet closed with our request unread: a reset
    finally:
        writer.close()
        await close_quietly(writer)


async def close_quietly(writer) -> None:
    writer.close()
    try:
        await writer.wait_closed()
    except OSError:
        pass


async def test_cap_per_address_refuses_the_extra_connection(start_node):
    node = await start_node(limits={"max_conns_per_addr": 2, "conn_rate_per_addr": 0, **NO_EXEMPTION})
    opened = [await subscribe_from(node, "tcp", "capped"), await subscribe_from(node, "ws", "capped")]
    try:
        await assert_refused_at_connect(node, "tcp")
        await assert_refused_at_connect(node, "ws")
        await eventually(lambda: node.stats.closes["too many connections from address"] == 2)
        stat = await node.rpc.stat()
        assert stat["addr_limited"] == {"conns_per_addr": 2, "conn_rate": 0} and stat["tracked_addresses"] == 1
        assert node.stats.refusals == {}  # refused before any subscribe
        result = await node.rpc.push_private("capped", MSG, 60)  # the open connections are not affected
        assert result.online == 2
        opened.append(await subscribe_from(node, "tcp", "capped", OTHER_SOURCE))  # nor is another address
        assert (await node.rpc.push_private("capped", MSG, 60)).online == 3
        await close_quietly(opened.pop(0)[1])  # one closes: room for one more from the first address
        await eventually(lambda: node.address_limiter.open_count("127.0.0.1") == 1)
        opened.append(await subscribe_from(node, "tcp", "capped"))
    finally:
        for _, writer in opened:
            await close_quietly(writer)
    await eventually(lambda: len(node.address_limiter) == 0)  # no connection left: no entry left


async def test_rate_per_address_refuses_fast_reconnects(start_node, caplog):
    node = await start_node(limits={"max_conns_per_addr": 0, "conn_rate_per_addr": 0.001, "conn_burst_per_addr": 2,
                                    **NO_EXEMPTION})
    for proto in ("tcp", "ws"):  # the burst is per address, across both transports
        _, writer = await subscribe_from(node, proto, "fast")
        await close_quietly(writer)
    await assert_refused_at_connect(node, "tcp")  # closing the first two gave no token back
    await assert_refused_at_connect(node, "ws")
    await eventually(lambda: node.stats.closes["connection rate from address"] == 2)
    _, writer = await subscribe_from(node, "ws", "fast", OTHER_SOURCE)  # another address has its own bucket
    await close_quietly(writer)
    stat = await node.rpc.stat()
    assert stat["addr_limited"] == {"conns_per_addr": 0, "conn_rate": 2}
    assert stat["closes"]["connection rate from address"] == 2
    await eventually(lambda: "refused by the per-address limits" in caplog.text)  # one summary line, not one each
    assert caplog.text.count("refused by the per-address limits") == 1


async def test_loopback_is_exempt_by_default(node, clients):
    for _ in range(3):
        for transport in (TcpSub, WsSub):
            assert (await clients.open(transport, node, "local"))[1] == REPLY_OK
    assert len(node.address_limiter) == 0 and node.address_limiter.enabled


async def test_heartbeat_flood_closes_the_tcp_connection(start_node):
    node = await start_node(limits={"heartbeat_burst": 3})
    reader, writer = await subscribe_from(node, "tcp", "beats")
    try:
        writer.write(b"hhh")
        assert await asyncio.wait_for(reader.readexactly(12), TIMEOUT) == REPLY_OK * 3  # a burst of 3 is fine
        writer.write(b"h" * 50)
        assert await asyncio.wait_for(reader.read(), TIMEOUT) == b""  # unanswered, closed
    finally:
        await close_quietly(writer)
    await eventually(lambda: node.stats.closes["heartbeat flood"] == 1)


async def test_heartbeat_flood_closes_the_websocket_with_1008(start_node):
    node = await start_node(limits={"heartbeat_burst": 3})
    reader, writer = await raw_connection(node.addresses["ws"][0])
    try:
        writer.write(ws_handshake(node.addresses["ws"][0], ws_query("beats", 30, None, "1")))
        await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), TIMEOUT)
        assert await asyncio.wait_for(reader.readexactly(6), TIMEOUT) == b"\x81\x04+h\r\n"
        writer.write(client_frame(OP_TEXT, b"h") * 20)
        first, size = await asyncio.wait_for(reader.readexactly(2), TIMEOUT)
        assert first == 0x88  # a close frame, no +h before it
        payload = await asyncio.wait_for(reader.readexactly(size), TIMEOUT)
        assert struct.unpack(">H", payload[:2])[0] == CLOSE_POLICY_VIOLATION
    finally:
        await close_quietly(writer)
    await eventually(lambda: node.stats.closes["heartbeat flood"] == 1)
