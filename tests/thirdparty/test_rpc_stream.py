"""FrameWriter: frames of one loop pass leave in order, the burst after the first in one write."""
from __future__ import annotations

import asyncio
import socket
from typing import AsyncIterator

import pytest

from thirdparty.rpc_stream import FrameWriter


class Sink(asyncio.Protocol):
    """The writing side's protocol (it reads nothing here)."""


@pytest.fixture
async def pair() -> AsyncIterator[tuple[asyncio.Transport, socket.socket]]:
    left, right = socket.socketpair()
    loop = asyncio.get_running_loop()
    transport, _ = await loop.connect_accepted_socket(Sink, left)
    right.setblocking(False)
    yield transport, right
    transport.abort()
    right.close()
    await asyncio.sleep(0)  # let the transport finish closing


async def read_exactly(sock: socket.socket, size: int) -> bytes:
    loop = asyncio.get_running_loop()
    data = b""
    while len(data) < size:
        data += await asyncio.wait_for(loop.sock_recv(sock, size - len(data)), 2.0)
    return data


async def test_first_frame_goes_at_once_and_the_rest_of_the_burst_follows_in_order(pair) -> None:
    transport, peer = pair
    writer = FrameWriter(transport, asyncio.get_running_loop())
    for frame in (b"a", b"bb", b"ccc", b"dddd"):
        writer.write(frame)
    assert peer.recv(100) == b"a"  # sent before the loop came round; the rest is still queued
    assert await read_exactly(peer, 9) == b"bbcccdddd"
    writer.write(b"e")  # a later pass opens a new window: sent at once again
    assert peer.recv(100) == b"e"


async def test_write_on_a_closed_transport_raises(pair) -> None:
    transport, _ = pair
    writer = FrameWriter(transport, asyncio.get_running_loop())
    transport.abort()
    assert writer.closed
    with pytest.raises(ConnectionError):
        writer.write(b"x")


async def test_frames_queued_when_the_transport_closes_are_dropped_quietly(pair) -> None:
    transport, peer = pair
    writer = FrameWriter(transport, asyncio.get_running_loop())
    writer.write(b"first")
    writer.write(b"second")
    transport.abort()
    await asyncio.sleep(0.01)  # the window closes on a closed transport: nothing raised, nothing sent
    assert await read_exactly(peer, 5) == b"first"
    assert peer.recv(100) == b""
