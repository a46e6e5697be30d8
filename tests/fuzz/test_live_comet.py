"""Hostile bytes on a live comet's listeners (TCP, WebSocket upgrade, WebSocket frames, CometRPC) and on its
message node's MessageRPC listener, over real loopback sockets.

Each test sends LIVE_INPUTS hostile inputs (tests/fuzz/budget.py; 50 by default, drawn from a fixed seed), one
connection each, and checks the documented answer byte for byte (tests/fuzz/hostile.py works it out with the pure
codecs): the ``-p`` reply, the HTTP error, the close code, one RPC response per request. After each batch the node
still serves a normal subscribe and push, and no client fault was logged at ERROR or with a traceback.
"""
from __future__ import annotations

import asyncio
import json
import logging
import random
from typing import Any

import pytest
import websockets

from comet.ws_frames import OP_CLOSE, OP_TEXT
from tests.fuzz import hostile
from tests.fuzz.budget import LIVE_INPUTS, SEED
from tests.fuzz.conftest import LiveNodes, our_faults
from tests.fuzz.strategies import command, server_frames
from thirdparty.rpc_codec import ERR_NOT_FOUND, ERR_PARAM, Decoder, Response, encode_request

HANG_GUARD = 10.0  # seconds: only so that a node that never answers fails the test instead of hanging it
READ_SIZE = 1 << 16


def where(index: int, data: bytes) -> str:
    """Enough to replay one failing input: the seed, its index and its first bytes."""
    return f"PUSHCLUSTER_FUZZ_SEED={SEED} input #{index} ({len(data)} bytes): {data[:120]!r}"


async def open_connection(address: tuple[str, int]) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    return await asyncio.open_connection(*address, limit=1 << 20)


async def close(writer: asyncio.StreamWriter) -> None:
    writer.close()
    try:
        await writer.wait_closed()
    except OSError:
        pass


async def send(writer: asyncio.StreamWriter, data: bytes, *, eof: bool) -> None:
    """Send ``data`` (and EOF); the node may close before taking all of it, which is its right."""
    try:
        writer.write(data)
        if eof:
            writer.write_eof()
        await writer.drain()
    except (ConnectionResetError, BrokenPipeError):
        pass


async def read_to_eof(reader: asyncio.StreamReader) -> bytes:
    """Everything the node sends until it closes (a reset counts as a close: the node aborted)."""
    received = bytearray()
    try:
        while chunk := await asyncio.wait_for(reader.read(READ_SIZE), HANG_GUARD):
            received += chunk
    except ConnectionResetError:
        pass
    return bytes(received)


async def exchange(address: tuple[str, int], data: bytes) -> bytes:
    """Send ``data`` then EOF on a new connection; return what the node sent before closing it."""
    reader, writer = await open_connection(address)
    try:
        await send(writer, data, eof=True)
        return await read_to_eof(reader)
    finally:
        await close(writer)


async def assert_still_serving(nodes: LiveNodes, batch: str) -> None:
    """A normal TCP and WebSocket subscribe, and a push that reaches both."""
    key = f"fz-check-{batch}"
    reader, writer = await open_connection(nodes.address("tcp"))
    host, port = nodes.address("ws")
    try:
        writer.write(command([b"sub", key.encode(), b"30", b"", b"1"]))
        assert await asyncio.wait_for(reader.readexactly(4), HANG_GUARD) == b"+h\r\n", f"after {batch}: TCP"
        async with websockets.connect(f"ws://{host}:{port}/sub?key={key}&heartbeat=30&ver=1",
                                      open_timeout=HANG_GUARD, ping_interval=None, compression=None) as ws:
            assert await asyncio.wait_for(ws.recv(), HANG_GUARD) == "+h\r\n", f"after {batch}: WebSocket"
            result = await nodes.comet_rpc.push_private(key, b'{"batch":"%s"}' % batch.encode(), 60)
            assert result.online == 2, f"after {batch}: push reached {result.online} of 2 connections"
            assert json.loads(await asyncio.wait_for(ws.recv(), HANG_GUARD))["msg"] == {"batch": batch}
        head = await asyncio.wait_for(reader.readuntil(b"\r\n"), HANG_GUARD)
        body = await asyncio.wait_for(reader.readexactly(int(head[1:-2]) + 2), HANG_GUARD)
        assert json.loads(body)["mid"] == result.mid
    finally:
        await close(writer)


def assert_no_fault_logged(caplog: pytest.LogCaptureFixture, batch: str) -> None:
    faults = our_faults(caplog.records)
    assert not faults, f"{batch}: a client fault was logged as our fault:\n" + "\n".join(faults[:10])


@pytest.fixture
def logs(caplog: pytest.LogCaptureFixture) -> pytest.LogCaptureFixture:
    caplog.set_level(logging.INFO)  # so that a traceback attached to an INFO line would be seen too
    return caplog


async def test_hostile_bytes_on_the_tcp_listener(live_nodes: LiveNodes, logs: pytest.LogCaptureFixture) -> None:
    rng = random.Random(f"tcp-{SEED}")
    for index, data in enumerate(hostile.tcp_inputs(rng, LIVE_INPUTS)):
        received = await exchange(live_nodes.address("tcp"), data)
        assert received == hostile.expect_tcp(data, live_nodes.heartbeat_burst), where(index, data)
    assert_no_fault_logged(logs, "tcp")
    await assert_still_serving(live_nodes, "tcp")


async def read_upgrade_answer(reader: asyncio.StreamReader) -> tuple[bytes, list[tuple[bool, int, bytes]]]:
    """(HTTP head or whole error response, frames after a 101) up to the node's close."""
    received = await read_to_eof(reader)
    if not received.startswith(b"HTTP/1.1 101 "):
        return received, []
    head, sep, rest = received.partition(b"\r\n\r\n")
    return head + sep, list(server_frames(rest))


async def test_hostile_upgrade_requests_on_the_websocket_listener(live_nodes: LiveNodes,
                                                                  logs: pytest.LogCaptureFixture) -> None:
    rng = random.Random(f"upgrade-{SEED}")
    for index, data in enumerate(hostile.upgrade_inputs(rng, LIVE_INPUTS)):
        expected = hostile.expect_upgrade(data)
        reader, writer = await open_connection(live_nodes.address("ws"))
        try:
            await send(writer, data, eof=True)
            http, frames = await read_upgrade_answer(reader)
        finally:
            await close(writer)
        assert http == expected.http, where(index, data)
        if not expected.reply:
            assert frames == [], where(index, data)
            continue
        assert frames[0] == (True, OP_TEXT, expected.reply), where(index, data)
        if expected.close is not None:  # a refused subscribe: the reply, then a close frame 1000
            assert [(opcode, payload[:2]) for _, opcode, payload in frames[1:]] == [
                (OP_CLOSE, expected.close.to_bytes(2, "big"))], where(index, data)
        else:
            assert frames[1:] == [], where(index, data)  # subscribed, then closed at our EOF
    assert_no_fault_logged(logs, "ws upgrade")
    await assert_still_serving(live_nodes, "ws-upgrade")


async def test_hostile_frames_on_the_websocket_listener(live_nodes: LiveNodes, logs: pytest.LogCaptureFixture) -> None:
    rng = random.Random(f"frames-{SEED}")
    for index, data in enumerate(hostile.frame_inputs(rng, LIVE_INPUTS)):
        reader, writer = await open_connection(live_nodes.address("ws"))
        try:
            writer.write(hostile.upgrade_request(rng))
            await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), HANG_GUARD)
            assert await asyncio.wait_for(reader.readexactly(6), HANG_GUARD) == b"\x81\x04+h\r\n"
            await send(writer, data, eof=True)
            frames = list(server_frames(await read_to_eof(reader)))
        finally:
            await close(writer)
        # The node reads what one write sent in one read; bytes fed one by one are the other possible extreme.
        burst = live_nodes.heartbeat_burst
        answers = [hostile.expect_frames([data], burst),
                   hostile.expect_frames([data[i:i + 1] for i in range(len(data))], burst)]
        assert any(matches(frames, answer) for answer in answers), (
            f"{where(index, data)}\ngot {frames}\nexpected {answers[0]}")
    assert_no_fault_logged(logs, "ws frames")
    await assert_still_serving(live_nodes, "ws-frames")


def matches(frames: list[tuple[bool, int, bytes]], answer: hostile.FrameAnswer) -> bool:
    """The node's frames are the expected pongs and heartbeat replies, then the expected close (if any)."""
    if any(not fin for fin, _, _ in frames):
        return False
    body = [(opcode, payload) for _, opcode, payload in frames]
    if answer.close is None and answer.close_payload is None:  # no close frame: EOF or an abort
        return body == answer.frames
    if body[:-1] != answer.frames or not body or body[-1][0] != OP_CLOSE:
        return False
    payload = body[-1][1]
    if answer.close_payload is not None:
        return payload == answer.close_payload
    return int.from_bytes(payload[:2], "big") == answer.close


async def rpc_batch(address: tuple[str, int], makers: list[Any], name: str) -> None:
    rng = random.Random(f"{name}-{SEED}")
    service = name.split("-")[0]
    for index, data in enumerate(hostile.rpc_inputs(rng, makers, LIVE_INPUTS)):
        expected = hostile.expect_rpc(data)
        reader, writer = await open_connection(address)
        try:
            await send(writer, data, eof=False)
            if expected.closes:
                frames = Decoder().feed(await read_to_eof(reader))
                assert all(isinstance(frame, Response) for frame in frames), where(index, data)
                continue
            replies = await read_replies(reader, len(expected.msgids))
            assert sorted(reply.msgid for reply in replies) == expected.msgids, where(index, data)
            for reply in replies:
                assert reply.error is None or (reply.error[0] in (ERR_NOT_FOUND, ERR_PARAM)
                                               and isinstance(reply.error[1], str)), f"{where(index, data)}: {reply}"
            pending = Decoder()
            pending.feed(data)
            if not pending.buffered:  # no frame left half-sent: the connection must still serve a call
                writer.write(encode_request(7, f"{service}.Ping", []))
                [pong] = await read_replies(reader, 1)
                assert (pong.msgid, pong.error, pong.result) == (7, None, "pong"), where(index, data)
        finally:
            await close(writer)


async def read_replies(reader: asyncio.StreamReader, count: int) -> list[Response]:
    decoder, replies = Decoder(), list[Response]()
    while len(replies) < count:
        chunk = await asyncio.wait_for(reader.read(READ_SIZE), HANG_GUARD)
        assert chunk, f"connection closed after {len(replies)} of {count} replies"
        for frame in decoder.feed(chunk):
            assert isinstance(frame, Response), frame
            replies.append(frame)
    return replies


async def test_hostile_frames_on_the_comet_rpc_listener(live_nodes: LiveNodes, logs: pytest.LogCaptureFixture) -> None:
    makers = hostile.rpc_makers("CometRPC", ("PushPrivate", "PushPrivates", "Close", "Ping", "Stat"))
    await rpc_batch(live_nodes.address("rpc"), makers, "CometRPC")
    assert_no_fault_logged(logs, "comet rpc")
    await assert_still_serving(live_nodes, "comet-rpc")


async def test_hostile_frames_on_the_message_rpc_listener(live_nodes: LiveNodes,
                                                          logs: pytest.LogCaptureFixture) -> None:
    makers = hostile.rpc_makers("MessageRPC", ("SavePrivate", "SavePrivates", "GetPrivate", "DelPrivate", "Ping"))
    await rpc_batch(live_nodes.address("message-rpc"), makers, "MessageRPC")
    assert_no_fault_logged(logs, "message rpc")
    await assert_still_serving(live_nodes, "message-rpc")
