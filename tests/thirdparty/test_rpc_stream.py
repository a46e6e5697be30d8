"""FrameWriter: frames of one loop iteration leave in order, the burst after the first in one write."""
from __future__ import annotations

import asyncio
import socket

import pytest
from tornado.iostream import IOStream, StreamClosedError

from thirdparty.rpc_stream import FrameWriter


@pytest.fixture
def pair():
    left, right = socket.socketpair()
    stream = IOStream(left)
    right.setblocking(False)
    yield stream, right
    stream.close()
    right.close()


async def read_exactly(sock, size):
    loop = asyncio.get_running_loop()
    data = b""
    while len(data) < size:
        data += await asyncio.wait_for(loop.sock_recv(sock, size - len(data)), 2.0)
    return data


async def test_first_frame_goes_at_once_and_the_rest_of_the_burst_follows_in_order(pair):
    stream, peer = pair
    writer = FrameWriter(stream)
    futures = [writer.write(frame) for frame in (b"a", b"bb", b"ccc", b"dddd")]
    assert peer.recv(100) == b"a"  # sent before the loop came round; the rest is still queued
    await asyncio.gather(*futures)
    assert await read_exactly(peer, 9) == b"bbcccdddd"
    writer.write(b"e")  # a later iteration opens a new window: sent at once again
    assert peer.recv(100) == b"e"


async def test_write_on_a_closed_stream_raises(pair):
    stream, _ = pair
    writer = FrameWriter(stream)
    stream.close()
    with pytest.raises(StreamClosedError):
        writer.write(b"x")


async def test_batch_fails_when_the_stream_closes_before_the_flush(pair):
    stream, _ = pair
    writer = FrameWriter(stream)
    writer.write(b"first")
    queued = writer.write(b"second")
    ignored = writer.write(b"third")
    stream.close()
    with pytest.raises(StreamClosedError):
        await queued
    assert ignored is queued  # one future per batch; its error is marked retrieved, so ignoring it is silent
