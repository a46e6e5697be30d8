"""One connection of an ``RpcServer`` (thirdparty/rpc_server.py): an asyncio protocol that decodes what arrives in
``data_received``, runs each request as a task of its server and writes the replies.

At most ``server.max_inflight`` requests of a connection run at once; decoded frames beyond that wait in a queue
and reading stops until one finishes. While the peer leaves its replies unread (the transport's write buffer above
its high-water mark) no more requests start and reading stops too. A frame that has begun must arrive whole within
``server.frame_timeout`` seconds; a malformed or oversized one closes this connection only (logged once at
WARNING). A reply that cannot be encoded, or is larger than ``max_frame_size``, becomes an internal error.
"""
from __future__ import annotations

import asyncio
import logging
import socket
from collections import deque
from typing import TYPE_CHECKING, Any, cast

from thirdparty.rpc_codec import (ERR_INTERNAL, Decoder, Frame, Notify, Request, RpcProtocolError, encode_error,
                                  encode_response)
from thirdparty.rpc_stream import FrameWriter

if TYPE_CHECKING:
    from thirdparty.rpc_server import RpcServer

__all__ = ["ServerConnection", "peer_name"]

log = logging.getLogger(__name__)


def peer_name(address: Any) -> str:
    if isinstance(address, tuple) and len(address) >= 2:
        return f"{address[0]}:{address[1]}"
    return str(address)


class ServerConnection(asyncio.Protocol):
    """One client connection: decode what arrives, run each request as a task, write the responses."""

    def __init__(self, server: RpcServer) -> None:
        self.server = server
        self.peer = "-"
        self.done = asyncio.Event()  # set when the connection is gone
        self._decoder = Decoder(server.max_frame_size)
        self._transport: asyncio.Transport | None = None
        self._writer: FrameWriter | None = None
        self._inflight = 0
        self._queued: deque[Frame] = deque()  # decoded, waiting for an inflight slot
        self._write_paused = False
        self._reading = True
        self._frame_timer: asyncio.TimerHandle | None = None  # runs while a frame has begun but not ended

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        transport = cast(asyncio.Transport, transport)  # uvloop's transports are not registered subclasses
        self._transport = transport
        self._writer = FrameWriter(transport, asyncio.get_running_loop())
        self.peer = peer_name(transport.get_extra_info("peername"))
        sock = transport.get_extra_info("socket")
        if sock is not None and sock.family in (socket.AF_INET, socket.AF_INET6):
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        if not self.server.connection_made(self):
            transport.abort()
            return
        log.debug("peer=%s: connected", self.peer)

    def connection_lost(self, exc: Exception | None) -> None:
        log.debug("peer=%s: disconnected", self.peer)
        if self._frame_timer is not None:
            self._frame_timer.cancel()
            self._frame_timer = None
        self._queued.clear()
        self.server.connection_lost(self)
        self.done.set()

    def abort(self) -> None:
        if self._transport is not None:
            self._transport.abort()

    def data_received(self, data: bytes) -> None:
        try:
            frames = self._decoder.feed(data)
        except RpcProtocolError as exc:
            log.warning("peer=%s: protocol error, closing the connection: %s", self.peer, exc)
            self.abort()
            return
        if self._frame_timer is not None and (frames or self._decoder.buffered == 0):
            self._frame_timer.cancel()   # the frame it timed is complete
            self._frame_timer = None
        if self._decoder.buffered and self._frame_timer is None:   # a frame has begun: it has frame_timeout
            self._frame_timer = asyncio.get_running_loop().call_later(self.server.frame_timeout,
                                                                      self._frame_timed_out)
        limit = self.server.max_inflight
        for frame in frames:
            if self._inflight < limit and not self._queued and not self._write_paused:
                self._start(frame)
            else:
                self._queued.append(frame)
        self._update_reading()

    def _frame_timed_out(self) -> None:
        self._frame_timer = None
        log.warning("peer=%s: frame incomplete after %.0fs, closing", self.peer, self.server.frame_timeout)
        self.abort()

    def pause_writing(self) -> None:
        self._write_paused = True
        self._update_reading()

    def resume_writing(self) -> None:
        self._write_paused = False
        self._start_queued()
        self._update_reading()

    def _start(self, frame: Frame) -> None:
        self._inflight += 1
        # A callback, not a finally: it also runs for a task cancelled before it started.
        self.server.start_request(self._run(frame)).add_done_callback(self._finished)

    def _finished(self, _: asyncio.Task[None]) -> None:
        self._inflight -= 1
        self._start_queued()
        self._update_reading()

    def _start_queued(self) -> None:
        """Start waiting requests while there is room (an inflight slot, replies being taken)."""
        limit = self.server.max_inflight
        while self._queued and self._inflight < limit and not self._write_paused:
            self._start(self._queued.popleft())

    def _update_reading(self) -> None:
        transport = self._transport
        if transport is None or transport.is_closing():
            return
        reading = not self._write_paused and not self._queued and self._inflight < self.server.max_inflight
        if reading != self._reading:
            self._reading = reading
            if reading:
                transport.resume_reading()
            else:
                transport.pause_reading()

    async def _run(self, frame: Frame) -> None:
        if isinstance(frame, Request):
            await self._answer(frame)
        elif isinstance(frame, Notify):
            await self.server.invoke(frame.method, frame.params, self.peer, None)
        else:
            log.warning("peer=%s msgid=%d: unexpected response frame from a client, ignored", self.peer, frame.msgid)

    async def _answer(self, request: Request) -> None:
        if self.server.draining:
            error, result = [ERR_INTERNAL, "server is shutting down"], None
        else:
            error, result = await self.server.invoke(request.method, request.params, self.peer, request.msgid)
        data = self._encode(request, error, result)
        writer = self._writer
        try:
            if writer is None:
                raise ConnectionResetError("not connected")
            writer.write(data)
        except ConnectionError:
            log.info("peer=%s msgid=%d method=%s: connection closed before the reply was sent",
                     self.peer, request.msgid, request.method)

    def _encode(self, request: Request, error: Any, result: Any) -> bytes:
        try:
            data = encode_response(request.msgid, error, result)
        except (TypeError, ValueError, OverflowError):
            log.error("peer=%s msgid=%d method=%s: result cannot be encoded as msgpack",
                      self.peer, request.msgid, request.method, exc_info=True)
            return encode_error(request.msgid, ERR_INTERNAL, "internal error")
        if len(data) > self.server.max_frame_size:
            log.error("peer=%s msgid=%d method=%s: reply of %d bytes exceeds max_frame_size %d",
                      self.peer, request.msgid, request.method, len(data), self.server.max_frame_size)
            return encode_error(request.msgid, ERR_INTERNAL, "reply too large")
        return data
