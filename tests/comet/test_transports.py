"""One suite, run over both client transports (TCP and WebSocket), against a real CometNode.

Clients connect over loopback sockets; pushes go through a real CometClient over MessagePack-RPC; the message
node is an in-memory fake (tests/comet/fakes.py).
"""
from __future__ import annotations

import asyncio
import json

import pytest

from comet.protocol import REPLY_CHANNEL, REPLY_NODE, REPLY_OK, REPLY_PARAM
from tests.comet.clients import TcpSub, raw_connection, slow_socket, ws_handshake
from tests.helpers import eventually
from thirdparty.ring import Ring
from thirdparty.rpc_client import RemoteError

MSG = b'{"title":"hi","n":1}'


def new_json(msg: bytes, mid: int) -> bytes:
    return b'{"msg":%b,"mid":%d,"gid":0}' % (msg, mid)


def old_json(msg: bytes, mid: int) -> bytes:
    return json.dumps({"msg": msg.decode(), "mid": mid, "gid": 0}, separators=(",", ":"),
                      ensure_ascii=False).encode()


def key_owned_by(ring: Ring, name: str, prefix: str = "user") -> str:
    return next(f"{prefix}{i}" for i in range(10_000) if ring.get(f"{prefix}{i}") == name)


async def test_subscribe_is_answered_with_plus_h(transport, node, clients):
    client, reply = await clients.open(transport, node, "alice", version="1")
    assert reply == REPLY_OK
    await eventually(lambda: node.table.count("alice") == 1)


async def test_heartbeat_is_answered(transport, node, clients):
    client, _ = await clients.open(transport, node, "alice")
    for _ in range(3):
        await client.heartbeat()
        assert await client.reply() == REPLY_OK
    await eventually(lambda: node.stats.heartbeats == 3)


async def test_push_frames_byte_for_byte_in_both_forms(transport, node, clients):
    new_client, _ = await clients.open(transport, node, "bob", version="1.0")
    old_client, _ = await clients.open(transport, node, "bob")
    message = '{"text": "推送", "list": [1, 2]}'.encode()
    result = await node.rpc.push_private("bob", message, 600)
    assert result.online == 2
    assert result.mid == 1000
    assert await new_client.recv_frame() == transport.wire(new_json(message, result.mid))
    assert await old_client.recv_frame() == transport.wire(old_json(message, result.mid))
    assert node.fake.stored["bob"] == [(1000, message)]


async def test_push_to_a_key_without_connections(node):
    result = await node.rpc.push_private("nobody", MSG, 60)
    assert (result.mid, result.online) == (1000, 0)
    assert node.table.channel_count == 0  # no lock or channel left behind


async def test_two_hundred_pushes_arrive_in_mid_order(transport, node, clients):
    client, _ = await clients.open(transport, node, "carol", version="1")
    node.fake.delay = 0.001  # saves overlap: the per-key lock must keep the order
    results = await asyncio.gather(*(node.rpc.push_private("carol", b'{"i":%d}' % i, 60) for i in range(200)))
    mids = []
    for _ in range(200):
        frame = await client.recv_frame()
        body = frame.split(b"\r\n")[1] if transport is TcpSub else frame
        mids.append(json.loads(body)["mid"])
    assert mids == sorted(result.mid for result in results)
    assert len(set(mids)) == 200


async def test_every_connection_of_a_key_receives(transport, node, clients):
    subscribers = [(await clients.open(transport, node, "dave", version="1"))[0] for _ in range(3)]
    result = await node.rpc.push_private("dave", MSG, 0)
    assert result.online == 3
    for client in subscribers:
        assert await client.recv_frame() == transport.wire(new_json(MSG, result.mid))


async def test_connection_limit_per_key_replies_c(transport, start_node, clients):
    node = await start_node(limits={"max_conns_per_key": 2})
    for _ in range(2):
        assert (await clients.open(transport, node, "erin"))[1] == REPLY_OK
    third, reply = await clients.open(transport, node, "erin")
    assert reply == REPLY_CHANNEL
    assert await third.closed_by_server() == b""
    assert (await clients.open(transport, node, "other"))[1] == REPLY_OK
    assert node.table.count("erin") == 2


async def test_key_of_another_ring_node_replies_n(transport, start_node, clients):
    node = await start_node(ring={"nodes": {"node1": 1, "node2": 1}})
    foreign = key_owned_by(Ring({"node1": 1, "node2": 1}), "node2")
    mine = key_owned_by(Ring({"node1": 1, "node2": 1}), "node1")
    client, reply = await clients.open(transport, node, foreign)
    assert reply == REPLY_NODE
    assert await client.closed_by_server() == b""
    assert (await clients.open(transport, node, mine))[1] == REPLY_OK
    with pytest.raises(RemoteError) as info:
        await node.rpc.push_private(foreign, MSG, 60)
    assert info.value.code == 1001
    assert node.fake.calls == []  # refused before any I/O


@pytest.mark.parametrize("key, heartbeat", [
    ("", 30),             # empty key
    ("k" * 129, 30),      # key too long
    ("k", 29),            # heartbeat below the minimum
    ("k", "x"),           # heartbeat not a number
    ("k", 100_000),       # heartbeat above the maximum
])
async def test_bad_parameters_reply_p(transport, node, clients, key, heartbeat):
    client, reply = await clients.open(transport, node, key, heartbeat)
    assert reply == REPLY_PARAM
    assert await client.closed_by_server() == b""
    assert node.table.connection_count == 0


async def test_first_packet_timeout_closes(transport, start_node):
    node = await start_node(limits={"first_packet_timeout": 0.3})
    reader, writer = await raw_connection(node.addresses[transport.proto][0])
    try:
        assert await asyncio.wait_for(reader.read(), 3) == b""  # closed without a reply
    finally:
        writer.close()
        await writer.wait_closed()
    if transport.proto == "tcp":
        await eventually(lambda: node.stats.closes["first packet timeout"] == 1)


async def test_heartbeat_silence_closes(transport, start_node, clients):
    node = await start_node(limits={"min_heartbeat": 1, "heartbeat_grace": 0.2})
    client, reply = await clients.open(transport, node, "quiet", 1)
    assert reply == REPLY_OK
    assert await client.closed_by_server() == b""
    await eventually(lambda: node.stats.closes["heartbeat timeout"] == 1)
    assert node.table.connection_count == 0


async def test_heartbeats_keep_the_connection_open(transport, start_node, clients):
    node = await start_node(limits={"min_heartbeat": 1, "heartbeat_grace": 0.2})
    client, _ = await clients.open(transport, node, "chatty", 1)
    for _ in range(4):  # 1.6 s, beyond heartbeat + grace
        await asyncio.sleep(0.4)
        await client.heartbeat()
        assert await client.reply() == REPLY_OK
    assert node.table.count("chatty") == 1
    assert node.stats.closes["heartbeat timeout"] == 0


async def test_anything_but_h_closes(transport, node, clients):
    client, _ = await clients.open(transport, node, "rude")
    await client.send_bad_frame()
    assert await client.closed_by_server() == b""
    await eventually(lambda: node.table.connection_count == 0)
    await eventually(lambda: node.stats.closes["protocol error"] == 1)


async def test_queue_overflow_closes_only_the_slow_connection(transport, start_node, clients):
    node = await start_node(limits={"max_queue": 4})
    slow = await slow_socket(node, transport.proto, "fan")
    fast, _ = await clients.open(transport, node, "fan", version="1")
    big = b'{"blob":"' + b"x" * 60_000 + b'"}'
    received = 0
    try:
        for i in range(400):
            result = await node.rpc.push_private("fan", big, 60)
            assert await fast.recv_frame() == transport.wire(new_json(big, result.mid))
            received += 1
            if node.stats.closes["queue overflow"]:
                break
        assert node.stats.closes["queue overflow"] == 1
        await eventually(lambda: node.table.count("fan") == 1)
        result = await node.rpc.push_private("fan", MSG, 60)  # the fast client still gets everything
        assert result.online == 1
        assert await fast.recv_frame() == transport.wire(new_json(MSG, result.mid))
    finally:
        slow.close()
        await slow.wait_closed()
    assert received >= 4


async def test_close_rpc_closes_the_key(transport, node, clients):
    first, _ = await clients.open(transport, node, "gone")
    second, _ = await clients.open(transport, node, "gone")
    survivor, _ = await clients.open(transport, node, "stays")
    assert await node.rpc.close_key("gone") == 2
    assert await first.closed_by_server() == b""
    assert await second.closed_by_server() == b""
    assert await node.rpc.close_key("gone") == 0
    await survivor.heartbeat()
    assert await survivor.reply() == REPLY_OK


async def test_message_node_down(transport, node, clients):
    client, _ = await clients.open(transport, node, "k1", version="1")
    node.fake.unavailable = True
    with pytest.raises(RemoteError) as info:
        await node.rpc.push_private("k1", MSG, 60)
    assert info.value.code == 65535
    assert await node.rpc.push_privates(["k1", "k2"], MSG, 60) == ["k1", "k2"]
    node.fake.unavailable = False
    result = await node.rpc.push_private("k1", MSG, 60)  # nothing was delivered in between
    assert await client.recv_frame() == transport.wire(new_json(MSG, result.mid))


async def test_push_privates(transport, start_node, clients):
    ring = {"node1": 1, "node2": 1}
    node = await start_node(ring={"nodes": ring})
    mine = [key_owned_by(Ring(ring), "node1", prefix) for prefix in ("a", "b", "c")]
    foreign = key_owned_by(Ring(ring), "node2")
    a_client, _ = await clients.open(transport, node, mine[0])
    b_client, _ = await clients.open(transport, node, mine[1], version="2")
    node.fake.drop = {mine[2]}
    failed = await node.rpc.push_privates([mine[0], foreign, mine[1], mine[2], mine[0], ""], MSG, 60)
    assert sorted(failed) == sorted([foreign, mine[2], ""])
    assert await a_client.recv_frame() == transport.wire(old_json(MSG, node.fake.last_mid[mine[0]]))
    assert await b_client.recv_frame() == transport.wire(new_json(MSG, node.fake.last_mid[mine[1]]))
    assert node.fake.calls == [("save_privates", mine)]  # one call, duplicates and refused keys left out


async def test_node_survives_garbage_on_every_listener(transport, node, clients):
    for proto, garbage in [("tcp", b"\x00\xffGARBAGE\r\n" * 10), ("tcp", b"*9\r\n"),
                           ("ws", b"NOT HTTP\r\n\r\n"), ("ws", b"GET /sub?key=k HTTP/1.1\r\n\r\n"),
                           ("ws", ws_handshake("x", "/nowhere")),
                           ("ws", b"POST /sub HTTP/1.1\r\nHost: x\r\nContent-Length: 100000000\r\n\r\n"),
                           ("rpc", b"\xc1\xc1\xc1 garbage"), ("stat", b"\x16\x03\x01 tls hello\r\n\r\n")]:
        reader, writer = await raw_connection(node.addresses[proto][0])
        writer.write(garbage)
        await writer.drain()
        try:
            await asyncio.wait_for(reader.read(1), 3)  # an error reply, or the connection closed
        finally:
            writer.close()
            await writer.wait_closed()
    client, reply = await clients.open(transport, node, "after", version="1")
    assert reply == REPLY_OK
    result = await node.rpc.push_private("after", MSG, 60)
    assert await client.recv_frame() == transport.wire(new_json(MSG, result.mid))
    assert await node.rpc.ping() is None


async def test_stop_closes_clients(transport, start_node, clients):
    node = await start_node()
    client, _ = await clients.open(transport, node, "bye")
    await node.stop()
    assert await client.closed_by_server() == b""
