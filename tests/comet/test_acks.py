"""Client acks on both transports, pushes that wait for their outcome, and what the comet traces about them.

A real CometNode on loopback with an in-memory message node (the message role is not the subject here) that also
takes trace batches, so that the comet's trace records are checked exactly. Clients are raw TCP sockets and the
``websockets`` package.
"""
from __future__ import annotations

import asyncio
import json

import pytest

from comet.ack_codec import tcp_ack, ws_ack
from message import trace_model
from tests.comet.clients import TIMEOUT, TcpSub, WsSub, slow_socket
from tests.comet.fakes import FakeMessage
from tests.helpers import eventually
from thirdparty.rpc_client import RemoteError

WAIT_ACKED = {"wait": "acked", "timeout": 2.0}


class TracingMessage(FakeMessage):
    """The in-memory message node, plus MessageRPC.Trace: keeps every record the comet sends."""

    def __init__(self) -> None:
        super().__init__()
        self.records: list[tuple[str, int, list]] = []

    async def trace(self, records):
        self.records.extend((key, mid, trace_model.unpack(data)) for key, mid, data in records)
        return len(records)

    async def trace_query(self, method, *params):
        raise AssertionError("not used")

    def of(self, kind: int, key: str) -> list[tuple[int, list]]:
        return [(mid, record) for k, mid, record in self.records if k == key and record[0] == kind]


@pytest.fixture
async def traced(start_node):
    return await start_node(TracingMessage())


async def send_ack(client, mid: int) -> None:
    if isinstance(client, TcpSub):
        await client.send_raw(tcp_ack(mid))
    else:
        await client.ws.send(ws_ack(mid))


def mid_of(client, frame: bytes) -> int:
    """The mid of a message as the transport carried it."""
    body = frame.split(b"\r\n", 1)[1] if isinstance(client, TcpSub) else frame
    return int(json.loads(body)["mid"])


async def acking(client, count: int = 1) -> list[int]:
    """Receive ``count`` messages and acknowledge each; their mids."""
    mids = []
    for _ in range(count):
        mids.append(mid_of(client, await client.recv_frame()))
        await send_ack(client, mids[-1])
    return mids


async def test_a_waiting_push_is_acked_by_its_connection_and_traced(traced, clients, transport):
    client, reply = await clients.open(transport, traced, "alice", version="1")
    assert reply.endswith(b"+h\r\n")
    receiver = asyncio.ensure_future(acking(client))
    result = await traced.rpc.push_private("alice", b'{"n":1}', 600, {"at": 1.5, "src": "10.0.0.9", **WAIT_ACKED},
                                           timeout=5)
    assert (result.online, result.outcome) == (1, "acked")
    assert await receiver == [result.mid]
    stat = await traced.rpc.stat()
    assert stat["acks"] == {"received": 1, "unknown": 0}
    assert stat["ack_waits"]["acked"] == 1 and stat["ack_waits"]["waiting"] == 0
    fake = traced.fake
    await eventually(lambda: bool(fake.of(trace_model.ACKED, "alice")))
    [(opened_mid, opened)] = fake.of(trace_model.OPENED, "alice")
    conn = opened[2]
    assert opened_mid == 0 and opened[3:5] == ["node1", traced.tracer.instance] and opened[6:] == [transport.proto, "1"]
    [(mid, pushed)] = fake.of(trace_model.PUSHED, "alice")
    assert mid == result.mid
    assert pushed[2:4] == ["node1", traced.tracer.instance] and pushed[6:] == [[conn], [], 1.5, "10.0.0.9", 7, 600]
    assert pushed[1] <= pushed[4] <= pushed[5]  # routed, saved, written
    assert fake.of(trace_model.ACKED, "alice") == [(result.mid, [trace_model.ACKED, pytest.approx(pushed[5], abs=5),
                                                                   conn, traced.tracer.instance])]
    await client.close()
    await eventually(lambda: bool(fake.of(trace_model.CLOSED, "alice")))
    assert fake.of(trace_model.CLOSED, "alice")[0][1][2:] == [conn, traced.tracer.instance, "client closed"]


async def test_wait_written_and_offline(traced, clients, transport):
    client, _ = await clients.open(transport, traced, "bob")
    result = await traced.rpc.push_private("bob", b"1", 600, {"wait": "written"})
    assert (result.online, result.outcome) == (1, "written")
    await client.recv_frame()
    result = await traced.rpc.push_private("nobody", b"1", 600, WAIT_ACKED)
    assert (result.online, result.outcome) == (0, "offline")
    result = await traced.rpc.push_private("nobody", b"1", 0, {"wait": "written"})
    assert (result.online, result.outcome) == (0, "offline")


async def test_a_push_not_acked_in_time_is_a_timeout(traced, clients, transport):
    client, _ = await clients.open(transport, traced, "carol")
    result = await traced.rpc.push_private("carol", b"1", 600, {"wait": "acked", "timeout": 0.2})
    assert (result.online, result.outcome) == (1, "timeout")
    await client.recv_frame()
    stat = await traced.rpc.stat()
    assert stat["ack_waits"]["timeouts"] == 1 and stat["ack_waits"]["waiting"] == 0


async def test_an_ack_from_another_connection_of_the_key_does_not_end_the_wait(traced, clients, transport):
    first, _ = await clients.open(transport, traced, "dave")
    push = asyncio.ensure_future(traced.rpc.push_private("dave", b"1", 600, {"wait": "acked", "timeout": 0.3}))
    mid = mid_of(first, await first.recv_frame())
    late, _ = await clients.open(transport, traced, "dave")  # subscribed after the push: it never got `mid`
    await send_ack(late, mid)
    assert (await push).outcome == "timeout"
    await eventually(lambda: traced.stats.acks_unknown == 1)


async def test_acks_of_mids_never_sent_are_ignored_and_counted(traced, clients, transport):
    client, _ = await clients.open(transport, traced, "erin")
    before = (await traced.rpc.push_private("erin", b"1", 600)).mid  # sent: valid
    await client.recv_frame()
    later, _ = await clients.open(transport, traced, "erin")
    for mid in (before, before + 1000, 1):  # before it subscribed, never pushed, ancient
        await send_ack(later, mid)
    await later.heartbeat()
    assert (await later.reply()).endswith(b"+h\r\n")  # still open: an unknown ack is no error
    await eventually(lambda: traced.stats.acks_unknown == 3)
    assert traced.stats.acks == 3 and not traced.fake.of(trace_model.ACKED, "erin")


async def test_old_clients_that_only_send_h_work_unchanged(traced, clients, transport):
    client, _ = await clients.open(transport, traced, "frank")
    for _ in range(3):
        await client.heartbeat()
        assert (await client.reply()).endswith(b"+h\r\n")
    result = await traced.rpc.push_private("frank", b'{"x":1}', 0)
    assert result.online == 1
    assert await client.recv_frame() == transport.wire(b'{"msg":"{\\"x\\":1}","mid":%d,"gid":0}' % result.mid)


async def test_a_tcp_ack_split_anywhere_and_mixed_with_heartbeats_is_taken(traced):
    client, _ = await TcpSub.open(traced, "gina", version="1")
    try:
        mids = [(await traced.rpc.push_private("gina", b"1", 600)).mid for _ in range(2)]
        for _ in mids:
            await client.recv_frame()
        stream = b"h" + tcp_ack(mids[0]) + b"hh" + tcp_ack(mids[1])
        for byte in stream:
            await client.send_raw(bytes([byte]))
        assert await asyncio.wait_for(client.reader.readexactly(12), TIMEOUT) == b"+h\r\n" * 3
        await eventually(lambda: traced.stats.acks == 2)
        assert traced.stats.acks_unknown == 0
    finally:
        await client.close()


@pytest.mark.parametrize("command", [
    b"*2\r\n$3\r\nack\r\n$3\r\nabc\r\n",                      # not digits
    b"*2\r\n$3\r\nack\r\n$1\r\n0\r\n",                        # mid 0
    b"*2\r\n$3\r\nack\r\n$20\r\n" + b"9" * 20 + b"\r\n",      # longer than an int64
    b"*2\r\n$3\r\nack\r\n$19\r\n9999999999999999999\r\n",     # above 2**63 - 1
    b"*2\r\n$3\r\nack\r\n$2\r\n123\r\n",                      # length mismatch
    b"*2\r\n$3\r\nnak\r\n$1\r\n1\r\n",                        # another command
    b"*5\r\n$3\r\nsub\r\n",                                   # a second subscribe
])
async def test_a_malformed_tcp_command_gets_p_and_the_connection_closes(traced, command):
    client, _ = await TcpSub.open(traced, "hank")
    try:
        await client.send_raw(command)
        assert await client.closed_by_server() == b"-p\r\n"
    finally:
        await client.close()
    await eventually(lambda: traced.stats.closes["protocol error"] == 1)


@pytest.mark.parametrize("frame", ["a", "a12x", "a0", "a" + "9" * 20, "a-5", "ack 5"])
async def test_a_malformed_websocket_ack_closes_with_1008(traced, frame):
    client, _ = await WsSub.open(traced, "ivy")
    try:
        await client.ws.send(frame)
        await client.closed_by_server()
        assert client.ws.close_code == 1008
    finally:
        await client.close()


async def test_more_acks_in_one_read_than_allowed_close_the_connection(start_node, clients, transport):
    node = await start_node(TracingMessage(), limits={"max_acks_per_read": 3})
    client, _ = await clients.open(transport, node, "jack")
    mid = (await node.rpc.push_private("jack", b"1", 600)).mid
    await client.recv_frame()
    if transport is TcpSub:
        await client.send_raw(tcp_ack(mid) * 4)
    else:  # four frames in one write, so that the comet reads them at once
        from tests.comet.clients import client_frame
        client.ws.transport.write(client_frame(1, b"a%d" % mid) * 4)
    await client.closed_by_server()
    await eventually(lambda: node.stats.closes["ack flood"] == 1)


async def test_a_queue_overflow_is_traced_as_not_written(start_node):
    node = await start_node(TracingMessage(), limits={"max_queue": 2})
    writer = await slow_socket(node, "tcp", "kim")
    try:
        body = b'{"pad":"' + b"x" * 60000 + b'"}'
        pushed = 0
        while not node.stats.closes["queue overflow"]:
            assert pushed < 400
            await node.rpc.push_private("kim", body, 600)
            pushed += 1
        fake = node.fake
        await eventually(lambda: len(fake.of(trace_model.PUSHED, "kim")) == pushed)
        records = [record for _, record in fake.of(trace_model.PUSHED, "kim")]
        conn = records[0][6][0]
        assert [record[7] for record in records] == [[]] * (pushed - 1) + [[[conn, "queue overflow"]]]
        assert [record[6] for record in records] == [[conn]] * (pushed - 1) + [[]]
        await eventually(lambda: bool(fake.of(trace_model.CLOSED, "kim")))
        assert fake.of(trace_model.CLOSED, "kim")[0][1][4] == "queue overflow"
    finally:
        writer.close()


async def test_mprivate_answers_an_outcome_per_key(traced, clients, transport):
    acker, _ = await clients.open(transport, traced, "lee")
    quiet, _ = await clients.open(transport, traced, "max")
    receiver = asyncio.ensure_future(acking(acker))
    failed, online, outcomes = await traced.rpc.push_privates_counted(["lee", "max", "ned"], b"1", 600,
                                                                     {"wait": "acked", "timeout": 0.5}, timeout=5)
    await receiver
    await quiet.recv_frame()
    assert failed == [] and online == 2 and outcomes == {"lee": "acked", "max": "timeout", "ned": "offline"}


async def test_waiting_pushes_are_bounded(start_node, clients, transport):
    node = await start_node(TracingMessage(), limits={"max_ack_waits": 1})
    client, _ = await clients.open(transport, node, "olga")
    first = asyncio.ensure_future(node.rpc.push_private("olga", b"1", 600, {"wait": "acked", "timeout": 0.3}))
    await eventually(lambda: len(node.waiters) == 1)
    second = await node.rpc.push_private("olga", b"2", 600, {"wait": "acked", "timeout": 0.3})
    assert second.outcome == "written" and node.waiters.refused == 1
    assert (await first).outcome == "timeout"


@pytest.mark.parametrize("meta, needle", [
    ("acked", "meta must be a map"),
    ({"wait": "maybe"}, "meta.wait"),
    ({"wait": "acked", "timeout": 0}, "meta.timeout"),
    ({"wait": "acked", "timeout": 61}, "meta.timeout"),
    ({"at": "yesterday"}, "meta.at"),
])
async def test_a_malformed_meta_is_a_param_error(node, meta, needle):
    with pytest.raises(RemoteError) as caught:
        await node.rpc._rpc.call("CometRPC.PushPrivate", "p", b"1", 600, meta)
    assert caught.value.code == 65534 and needle in caught.value.message
