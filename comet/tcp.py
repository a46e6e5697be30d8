"""The TCP client transport (DESIGN.md section 4): subscribe, heartbeats, messages as ``$len`` bulk strings.

One coroutine per connection: read the subscribe command (``protocol.SubscribeParser``) within the first-packet
timeout, have the service admit it, answer ``+h``, then answer every ``h`` with ``+h`` until the client goes
quiet for heartbeat + grace seconds, sends anything else, or is closed. Deadlines live in the node's shared
``heartbeat.TimerWheel``; a :class:`TcpConnection` holds no timer of its own.

Writes are not awaited: a message is appended to the stream's buffer (written to the socket at once when the
kernel takes it). A write that the kernel did not take completely counts as queued until tornado flushes it;
with ``max_queue`` writes queued the next one closes the connection (the message stays in storage, the client
fetches it by mid after reconnecting).
"""
from __future__ import annotations

import asyncio
import logging
from typing import Any

from tornado.iostream import IOStream, StreamClosedError
from tornado.tcpserver import TCPServer

from comet.channel import next_conn_id
from comet.heartbeat import Deadlines
from comet.message_codec import EncodedMessage
from comet.protocol import REPLY_OK, ProtocolError, Subscribe, SubscribeLimits, SubscribeParser, count_heartbeats
from comet.service import CometService
from comet.stat import (
    CLOSE_CLIENT, CLOSE_FIRST_PACKET, CLOSE_HEARTBEAT, CLOSE_OVERFLOW, CLOSE_PROTOCOL, CLOSE_REJECTED,
)

log = logging.getLogger(__name__)

READ_CHUNK_SIZE = 4096
MAX_BUFFER_SIZE = 64 * 1024  # tornado's read buffer bound; a subscribe command is at most ~20 KiB


def peer_name(address: Any) -> str:
    if isinstance(address, tuple) and len(address) >= 2:
        return f"{address[0]}:{address[1]}"
    return str(address)


class TcpConnection:
    """One TCP client: the stream, its key and message form, and the count of writes not yet flushed."""

    __slots__ = ("stream", "peer", "conn_id", "key", "new_form", "subscribed", "close_reason", "_queued",
                 "_max_queue")
    protocol = "tcp"

    def __init__(self, stream: IOStream, peer: str, max_queue: int) -> None:
        self.stream = stream
        self.peer = peer
        self.conn_id = next_conn_id()
        self.key = ""
        self.new_form = False
        self.subscribed = False
        self.close_reason: str | None = None
        self._queued = 0
        self._max_queue = max_queue

    def send(self, message: EncodedMessage) -> bool:
        return self.write(message.frame(self.new_form))

    def write(self, data: bytes) -> bool:
        """Append to the stream; False (and the connection closes) when the queue is full or it is gone."""
        if self.close_reason is not None:
            return False
        if self._queued >= self._max_queue:
            log.warning("key=%s conn=%d peer=%s: %d writes queued, closing the slow connection",
                        self.key, self.conn_id, self.peer, self._queued)
            self.close(CLOSE_OVERFLOW)
            return False
        try:
            future = self.stream.write(data)
        except StreamClosedError:
            self.close(CLOSE_CLIENT)
            return False
        if not future.done():
            self._queued += 1
            future.add_done_callback(self._flushed)
        return True

    def _flushed(self, future: "asyncio.Future[None]") -> None:
        self._queued -= 1

    def close(self, reason: str) -> None:
        if self.close_reason is None:
            self.close_reason = reason
        self.stream.close()

    def on_timeout(self) -> None:
        self.close(CLOSE_HEARTBEAT if self.subscribed else CLOSE_FIRST_PACKET)


class CometTCPServer(TCPServer):
    """Accepts TCP clients and runs each one's subscribe / heartbeat session."""

    def __init__(self, service: CometService, deadlines: Deadlines[Any], limits: SubscribeLimits,
                 max_queue: int) -> None:
        super().__init__(max_buffer_size=MAX_BUFFER_SIZE, read_chunk_size=READ_CHUNK_SIZE)
        self.service = service
        self.deadlines = deadlines
        self.limits = limits
        self.max_queue = max_queue
        self.sessions: set[TcpConnection] = set()  # every open connection, subscribed or not

    async def handle_stream(self, stream: IOStream, address: Any) -> None:
        stream.set_nodelay(True)  # pushes are small and latency matters (Go, hence gopush-cluster, does the same)
        conn = TcpConnection(stream, peer_name(address), self.max_queue)
        self.sessions.add(conn)
        self.deadlines.first_packet(conn)
        try:
            await self._serve(conn)
        except StreamClosedError:
            pass
        except ProtocolError as exc:
            log.info("key=%s conn=%d peer=%s: %s, closing", conn.key, conn.conn_id, conn.peer, exc.reason)
            conn.close(CLOSE_PROTOCOL)
        except Exception:
            log.error("key=%s conn=%d peer=%s: unexpected error", conn.key, conn.conn_id, conn.peer, exc_info=True)
            conn.close(CLOSE_PROTOCOL)
        finally:
            stream.close()
            self.sessions.discard(conn)
            self.deadlines.cancel(conn)
            reason = conn.close_reason or CLOSE_CLIENT
            self.service.connection_closed(conn, reason, conn.subscribed)
            log.debug("key=%s conn=%d peer=%s: closed (%s)", conn.key, conn.conn_id, conn.peer, reason)

    async def _serve(self, conn: TcpConnection) -> None:
        subscribe, pending = await self._read_subscribe(conn)
        if subscribe is None:
            return
        conn.key = subscribe.key
        conn.new_form = subscribe.new_form
        reply = self.service.subscribe(conn, subscribe)
        if reply != REPLY_OK:
            log.info("key=%s conn=%d peer=%s: subscribe refused with %r", conn.key, conn.conn_id, conn.peer,
                     reply.strip())
            await self._refuse(conn, reply)
            return
        conn.subscribed = True
        conn.write(REPLY_OK)  # before any await: no message can overtake the +h
        self.deadlines.heartbeat(conn, subscribe.heartbeat)
        log.debug("key=%s conn=%d peer=%s: subscribed, heartbeat=%d version=%r", conn.key, conn.conn_id,
                  conn.peer, subscribe.heartbeat, subscribe.version)
        stream = conn.stream
        while True:
            if pending:
                beats = count_heartbeats(pending)
                conn.write(REPLY_OK * beats)
                self.deadlines.heartbeat(conn, subscribe.heartbeat)
                self.service.stats.heartbeats += beats
            pending = await stream.read_bytes(READ_CHUNK_SIZE, partial=True)

    async def _read_subscribe(self, conn: TcpConnection) -> tuple[Subscribe | None, bytes]:
        parser = SubscribeParser(self.limits)
        while True:
            data = await conn.stream.read_bytes(READ_CHUNK_SIZE, partial=True)
            try:
                subscribe = parser.feed(data)
            except ProtocolError as exc:
                log.info("conn=%d peer=%s: bad subscribe command: %s", conn.conn_id, conn.peer, exc.reason)
                self.service.stats.refusals[exc.reply.decode().strip()] += 1
                await self._refuse(conn, exc.reply)
                return None, b""
            if subscribe is not None:
                return subscribe, parser.remainder

    async def _refuse(self, conn: TcpConnection, reply: bytes) -> None:
        """Send a ``-x`` reply, then close (the first-packet deadline still bounds a client that never reads)."""
        conn.close_reason = CLOSE_REJECTED
        try:
            await conn.stream.write(reply)
        except StreamClosedError:
            pass
        conn.stream.close()
