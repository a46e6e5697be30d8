"""RpcServer + RpcClient over real loopback sockets: calls, pipelining, error mapping, timeouts, redial."""
from __future__ import annotations

import asyncio
import logging
import socket
from dataclasses import dataclass, field

import msgpack
import pytest

from tests.helpers import eventually, free_port
from thirdparty.rpc_client import RemoteError, RpcClient, RpcTimeout, RpcUnavailable, backoff_delay
from thirdparty.rpc_codec import (
    ERR_INTERNAL, ERR_NOT_FOUND, ERR_PARAM, Decoder, Response, RpcError, encode_request,
)
from thirdparty.rpc_server import RpcServer


@dataclass
class Service:
    RPC_METHODS = ("Add", "Echo", "Gate", "Hang", "Fail", "Crash", "Record", "Unencodable", "Optional",
                   "Repeat", "Big")
    gates: dict[str, asyncio.Event] = field(default_factory=dict)
    started: list[str] = field(default_factory=list)
    recorded: list[object] = field(default_factory=list)

    def gate(self, name):
        return self.gates.setdefault(name, asyncio.Event())

    async def Add(self, a, b):
        return a + b

    async def Echo(self, *args):
        return list(args)

    async def Gate(self, name):
        self.started.append(name)
        await self.gate(name).wait()
        return name

    async def Hang(self):
        await asyncio.Event().wait()

    async def Fail(self, code, message):
        raise RpcError(code, message)

    async def Crash(self):
        raise RuntimeError("boom")

    async def Record(self, value):
        self.recorded.append(value)

    async def Unencodable(self):
        return object()

    async def Optional(self, a, b=2):
        return [a, b]

    async def Repeat(self, data, times):
        return data * times

    async def Big(self, n):
        self.started.append(n)
        return b"x" * (256 * 1024)


class Node:
    """An RpcServer serving a Service on 127.0.0.1:<port>."""

    def __init__(self, port=None, **server_options):
        self.port = port or free_port()
        self.address = f"127.0.0.1:{self.port}"
        self.service = Service()
        self.server = RpcServer(**server_options)
        self.server.register("T", self.service)

    def start(self):
        self.server.listen(self.port, address="127.0.0.1")
        return self

    async def stop(self):
        await self.server.close_all()


@pytest.fixture
async def node():
    node = Node().start()
    yield node
    await node.stop()


@pytest.fixture
async def client(node):
    client = RpcClient(node.address, timeout=2.0)
    yield client
    await client.close()


class FakeClock:
    def __init__(self):
        self.now = 1000.0

    def __call__(self):
        return self.now


async def test_call_returns_the_result_and_keeps_str_and_bytes_apart(client):
    assert await client.call("T.Add", 2, 3) == 5
    assert await client.call("T.Echo", "text", b"\x00bytes", [1, {"k": None}]) == ["text", b"\x00bytes",
                                                                                  [1, {"k": None}]]
    assert await client.call("T.Optional", 1) == [1, 2]
    assert client.connected


async def test_pipelined_calls_share_one_connection(node, client):
    results = await asyncio.gather(*(client.call("T.Add", i, i) for i in range(200)))
    assert results == [2 * i for i in range(200)]
    assert node.server.connection_count == 1
    assert client.pending_count == 0


async def test_replies_arrive_out_of_order(node, client):
    first = asyncio.create_task(client.call("T.Gate", "first"))
    second = asyncio.create_task(client.call("T.Gate", "second"))
    await eventually(lambda: len(node.service.started) == 2)
    node.service.gate("second").set()
    assert await second == "second"
    assert not first.done()
    node.service.gate("first").set()
    assert await first == "first"


async def test_rpc_error_becomes_remote_error_logged_without_traceback(client, caplog):
    with caplog.at_level(logging.INFO, logger="thirdparty.rpc_server"):
        with pytest.raises(RemoteError) as info:
            await client.call("T.Fail", ERR_NOT_FOUND, "key alice is not on this node")
    assert (info.value.code, info.value.message) == (ERR_NOT_FOUND, "key alice is not on this node")
    [record] = [r for r in caplog.records if "error 1001" in r.getMessage()]
    assert record.levelno == logging.INFO and record.exc_info is None


async def test_unknown_method(client):
    with pytest.raises(RemoteError) as info:
        await client.call("T.Nope", 1)
    assert (info.value.code, info.value.message) == (ERR_PARAM, "unknown method T.Nope")


@pytest.mark.parametrize("method,params", [("T.Add", [1]), ("T.Add", [1, 2, 3]), ("T.Optional", []),
                                           ("T.Hang", [1])])
async def test_wrong_param_count(client, method, params):
    with pytest.raises(RemoteError) as info:
        await client.call(method, *params)
    assert info.value.code == ERR_PARAM
    assert "params" in info.value.message


async def test_handler_crash_is_an_internal_error_logged_with_traceback(client, caplog):
    with caplog.at_level(logging.ERROR, logger="thirdparty.rpc_server"):
        with pytest.raises(RemoteError) as info:
            await client.call("T.Crash")
    assert (info.value.code, info.value.message) == (ERR_INTERNAL, "internal error")
    [record] = [r for r in caplog.records if r.levelno == logging.ERROR]
    assert "method=T.Crash" in record.getMessage()
    assert record.exc_info is not None and record.exc_info[0] is RuntimeError
    assert await client.call("T.Add", 1, 1) == 2


async def test_unencodable_result_is_an_internal_error(client, caplog):
    with caplog.at_level(logging.ERROR, logger="thirdparty.rpc_server"):
        with pytest.raises(RemoteError) as info:
            await client.call("T.Unencodable")
    assert info.value.code == ERR_INTERNAL


async def test_timeout_forgets_the_call_and_drops_the_late_reply(node, client):
    with pytest.raises(RpcTimeout):
        await client.call("T.Gate", "late", timeout=0.05)
    assert client.pending_count == 0
    node.service.gate("late").set()  # the late reply arrives and is dropped
    assert await client.call("T.Add", 1, 2) == 3
    assert isinstance(RpcTimeout("x"), RpcUnavailable)


async def test_params_that_cannot_be_encoded_are_refused_locally(client):
    with pytest.raises(RemoteError) as info:
        await client.call("T.Echo", object())
    assert info.value.code == ERR_PARAM
    assert await client.call("T.Add", 1, 2) == 3


async def test_request_larger_than_max_frame_size_is_refused_locally(node):
    client = RpcClient(node.address, max_frame_size=1024)
    try:
        with pytest.raises(RemoteError) as info:
            await client.call("T.Echo", b"x" * 2000)
        assert info.value.code == ERR_PARAM
        assert await client.call("T.Echo", b"x" * 100) == [b"x" * 100]
    finally:
        await client.close()


async def test_reply_larger_than_max_frame_size_is_an_internal_error(caplog):
    node = Node(max_frame_size=4096).start()
    client = RpcClient(node.address)
    try:
        with caplog.at_level(logging.ERROR, logger="thirdparty.rpc_server"):
            with pytest.raises(RemoteError) as info:
                await client.call("T.Repeat", b"x" * 1000, 5)
        assert (info.value.code, info.value.message) == (ERR_INTERNAL, "reply too large")
        assert await client.call("T.Repeat", b"x" * 1000, 2) == b"x" * 2000
    finally:
        await client.close()
        await node.stop()


async def test_notify_runs_the_method_and_sends_nothing(node, client):
    await client.notify("T.Record", "hello")
    await client.notify("T.Nope")
    await eventually(lambda: node.service.recorded == ["hello"])
    assert await client.call("T.Add", 1, 2) == 3


async def test_nothing_listening_fails_fast_then_backs_off():
    clock = FakeClock()
    client = RpcClient(f"127.0.0.1:{free_port()}", clock=clock, jitter=lambda: 0.0, backoff_base=1.0)
    try:
        with pytest.raises(RpcUnavailable, match="cannot connect") as info:
            await client.call("T.Add", 1, 2)
        assert not isinstance(info.value, RpcTimeout)
        with pytest.raises(RpcUnavailable, match="next dial in 1.00s"):
            await client.call("T.Add", 1, 2)
        clock.now += 1.0
        with pytest.raises(RpcUnavailable, match="cannot connect"):
            await client.call("T.Add", 1, 2)  # one more dial, then twice the backoff
        clock.now += 1.5
        with pytest.raises(RpcUnavailable, match="next dial in 0.50s"):
            await client.call("T.Add", 1, 2)
    finally:
        await client.close()


async def test_client_reconnects_after_the_backoff_once_the_server_is_back():
    clock = FakeClock()
    port = free_port()
    client = RpcClient(f"127.0.0.1:{port}", clock=clock, jitter=lambda: 0.0, backoff_base=1.0)
    node = Node(port)
    try:
        with pytest.raises(RpcUnavailable):
            await client.call("T.Add", 1, 2)
        node.start()
        with pytest.raises(RpcUnavailable, match="next dial"):
            await client.call("T.Add", 1, 2)
        clock.now += 1.0
        assert await client.call("T.Add", 1, 2) == 3
    finally:
        await client.close()
        await node.stop()


async def test_server_restart_is_picked_up_by_the_next_call():
    first = Node().start()
    client = RpcClient(first.address)
    second = Node(first.port)
    try:
        assert await client.call("T.Add", 1, 1) == 2
        await first.stop()
        await eventually(lambda: not client.connected)
        second.start()

        async def call_works():
            try:
                return await client.call("T.Add", 2, 2) == 4
            except RpcUnavailable:
                return False
        await eventually(call_works)
    finally:
        await client.close()
        await second.stop()


async def test_connection_lost_fails_every_pending_call_at_once(node):
    client = RpcClient(node.address, timeout=30.0)
    try:
        calls = [asyncio.create_task(client.call("T.Hang")) for _ in range(5)]
        await eventually(lambda: client.pending_count == 5)
        await node.server.close_all()
        results = await asyncio.wait_for(asyncio.gather(*calls, return_exceptions=True), 5.0)
        assert all(type(result) is RpcUnavailable for result in results), results
        assert client.pending_count == 0
    finally:
        await client.close()


async def test_concurrent_first_calls_share_one_dial(node):
    client = RpcClient(node.address)
    try:
        assert await asyncio.gather(*(client.call("T.Add", i, 0) for i in range(20))) == list(range(20))
        assert node.server.connection_count == 1
    finally:
        await client.close()


async def test_close_fails_pending_and_later_calls(node):
    client = RpcClient(node.address, timeout=30.0)
    pending = asyncio.create_task(client.call("T.Hang"))
    await eventually(lambda: client.pending_count == 1)
    await client.close()
    with pytest.raises(RpcUnavailable, match="client closed"):
        await pending
    with pytest.raises(RpcUnavailable, match="client closed"):
        await client.call("T.Add", 1, 2)
    await eventually(lambda: node.server.connection_count == 0)


async def test_close_while_dialling_fails_the_waiting_call(node):
    client = RpcClient(node.address)
    call = asyncio.create_task(client.call("T.Add", 1, 2))
    await asyncio.sleep(0)  # the call has started the dial and waits for it
    await client.close()
    with pytest.raises(RpcUnavailable, match="client closed"):
        await call
    await eventually(lambda: node.server.connection_count == 0)


def raw_exchange(port, data):
    """Send bytes on a raw socket; return everything the server sent before it closed (a reset counts as closed)."""
    with socket.create_connection(("127.0.0.1", port), timeout=2.0) as sock:
        sock.sendall(data)
        chunks = []
        while True:
            try:
                chunk = sock.recv(65536)
            except ConnectionResetError:
                chunk = b""
            if not chunk:
                return b"".join(chunks)
            chunks.append(chunk)


GARBAGE = {
    "reserved byte": b"\xc1garbage",
    "map": msgpack.packb({"not": "an array"}),
    "short request": msgpack.packb([0, 1, "T.Add"]),
    "oversized frame": b"\xc6\x00\x00\x20\x00" + b"x" * 5000,  # an 8 KiB bin, over max_frame_size 4 KiB
}


@pytest.mark.parametrize("garbage", GARBAGE.values(), ids=GARBAGE.keys())
async def test_garbage_closes_only_that_connection(caplog, garbage):
    node = Node(max_frame_size=4096).start()
    client = RpcClient(node.address)
    try:
        assert await client.call("T.Add", 1, 1) == 2
        with caplog.at_level(logging.WARNING, logger="thirdparty.rpc_server"):
            assert await asyncio.to_thread(raw_exchange, node.port, garbage) == b""
        [record] = [r for r in caplog.records if "protocol error" in r.getMessage()]
        assert record.levelno == logging.WARNING and record.exc_info is None
        assert await client.call("T.Add", 2, 2) == 4
        second = RpcClient(node.address)
        try:
            assert await second.call("T.Add", 3, 3) == 6
        finally:
            await second.close()
    finally:
        await client.close()
        await node.stop()


async def test_raw_msgpack_rpc_peer_gets_standard_frames(node):
    data = encode_request(7, "T.Add", [20, 22]) + encode_request(8, "T.Nope", [])
    with socket.create_connection(("127.0.0.1", node.port), timeout=2.0) as sock:
        sock.sendall(data)
        decoder, frames = Decoder(), []
        while len(frames) < 2:
            frames += decoder.feed(await asyncio.to_thread(sock.recv, 65536))
    assert sorted(frames, key=lambda f: f.msgid) == [
        Response(7, None, 42), Response(8, [ERR_PARAM, "unknown method T.Nope"], None)]


async def test_max_inflight_applies_back_pressure():
    node = Node(max_inflight=2).start()
    client = RpcClient(node.address)
    try:
        calls = [asyncio.create_task(client.call("T.Gate", name)) for name in ("a", "b", "c")]
        await eventually(lambda: len(node.service.started) == 2)
        await asyncio.sleep(0.05)
        assert node.service.started == ["a", "b"]
        node.service.gate("a").set()
        await eventually(lambda: len(node.service.started) == 3)
        node.service.gate("b").set()
        node.service.gate("c").set()
        assert await asyncio.gather(*calls) == ["a", "b", "c"]
    finally:
        await client.close()
        await node.stop()


async def test_a_peer_that_does_not_take_its_replies_gets_no_more_work_done():
    """Back pressure on the write side: requests of a peer that leaves its replies unread wait (beyond the
    inflight limit, they are not run into an ever-growing buffer); once it reads, every one is answered."""
    node = Node(max_inflight=8).start()
    count = 200  # 200 x 256 KiB of replies: far more than the socket buffers of both ends hold
    data = b"".join(encode_request(n, "T.Big", [n]) for n in range(count))
    try:
        with socket.create_connection(("127.0.0.1", node.port), timeout=5.0) as sock:
            sock.sendall(data)
            await eventually(lambda: len(node.service.started) > 0)
            await asyncio.sleep(0.3)  # time to run everything, were nothing holding it back
            assert len(node.service.started) < count
            decoder, frames = Decoder(max_frame_size=1 << 20), []
            while len(frames) < count:
                frames += decoder.feed(await asyncio.to_thread(sock.recv, 1 << 20))
        assert sorted(frame.msgid for frame in frames) == list(range(count))
        assert sorted(node.service.started) == list(range(count))
    finally:
        await node.stop()


async def test_close_all_finishes_while_a_connection_is_at_its_inflight_limit():
    node = Node(max_inflight=1).start()
    client = RpcClient(node.address, timeout=30.0)
    try:
        calls = [asyncio.create_task(client.call("T.Hang")) for _ in range(3)]
        await eventually(lambda: client.pending_count == 3)
        await asyncio.wait_for(node.server.close_all(), 5.0)
        results = await asyncio.wait_for(asyncio.gather(*calls, return_exceptions=True), 5.0)
        assert all(isinstance(result, RpcUnavailable) for result in results), results
    finally:
        await client.close()


async def test_close_all_lets_running_calls_answer_within_the_grace(node, client):
    call = asyncio.create_task(client.call("T.Gate", "g"))
    await eventually(lambda: node.service.started == ["g"])
    closing = asyncio.create_task(node.server.close_all(grace=5.0))
    await asyncio.sleep(0)
    node.service.gate("g").set()
    assert await call == "g"
    await closing
    assert node.server.connection_count == 0
    with pytest.raises(RpcUnavailable):
        await client.call("T.Add", 1, 1)


async def test_client_drops_a_server_that_sends_garbage():
    async def handle(reader, writer):
        await reader.read(100)
        writer.write(b"\xc1")
        await writer.drain()
        await reader.read(100)
        writer.close()
        await writer.wait_closed()

    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    client = RpcClient(f"127.0.0.1:{port}", timeout=5.0)
    try:
        with pytest.raises(RpcUnavailable, match="protocol error") as info:
            await client.call("T.Add", 1, 2)
        assert not isinstance(info.value, RpcTimeout)
    finally:
        await client.close()
        server.close()
        await server.wait_closed()


class NotAsync:
    RPC_METHODS = ("Ping",)

    def Ping(self):
        return "pong"


class Missing:
    RPC_METHODS = ("Ping",)


class KeywordOnly:
    RPC_METHODS = ("Ping",)

    async def Ping(self, *, required):
        return required


@pytest.mark.parametrize("service", [NotAsync(), Missing(), KeywordOnly(), object()])
def test_register_rejects_bad_services(service):
    with pytest.raises(TypeError):
        RpcServer().register("X", service)


def test_register_rejects_a_duplicate_service():
    server = RpcServer()
    server.register("T", Service())
    with pytest.raises(ValueError):
        server.register("T", Service())


@pytest.mark.parametrize("address", ["nohost", "127.0.0.1:http", "[::1]"])
def test_client_rejects_a_bad_address(address):
    with pytest.raises(ValueError):
        RpcClient(address)


def test_backoff_doubles_up_to_the_maximum_with_jitter():
    delays = [backoff_delay(n, base=0.05, maximum=2.0, jitter=0.0) for n in range(0, 9)]
    assert delays == [0.0, 0.05, 0.1, 0.2, 0.4, 0.8, 1.6, 2.0, 2.0]
    assert backoff_delay(3, base=0.05, maximum=2.0, jitter=0.999) == pytest.approx(0.1, rel=0.01)
    assert backoff_delay(10_000, base=0.05, maximum=2.0, jitter=0.0) == 2.0
