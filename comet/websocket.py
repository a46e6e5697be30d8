"""The WebSocket client transport (DESIGN.md section 4): ``GET /sub?key=K&heartbeat=S[&token=T][&ver=V]``.

The upgrade is always accepted; then the query parameters are checked with the TCP rules
(``protocol.validate_subscribe``) and the reply goes out as one text frame: ``+h\\r\\n`` on success, else
``-p\\r\\n`` / ``-a\\r\\n`` / ``-c\\r\\n`` / ``-n\\r\\n`` followed by a close. The reply bytes are the TCP ones,
CRLF included, exactly as gopush-cluster's WebSocket server wrote them (its browser SDK looks only at the
first character). The heartbeat is a text frame ``h`` (a binary ``h`` is accepted too, as gopush-cluster did),
answered with a ``+h\\r\\n`` text frame; any other frame closes the connection (1008), and a frame larger than
``limits.max_ws_frame`` closes it with 1009 (tornado's ``websocket_max_message_size``). Each message is one text
frame holding the message JSON.

Any ``Origin`` is accepted: browsers connect from the application's own pages, on other origins than the
comet's, and the key is not a secret the comet protects (subscribe tokens will be, DESIGN.md section 8).
The first-packet timeout bounds the upgrade request (the HTTP server's header timeout); afterwards the same
heartbeat deadlines and queue limit as TCP apply.
"""
from __future__ import annotations

import asyncio
import logging
from typing import Any

import tornado.web
from tornado.iostream import IOStream
from tornado.websocket import WebSocketClosedError, WebSocketHandler

from comet.channel import next_conn_id
from comet.heartbeat import Deadlines
from comet.message_codec import EncodedMessage
from comet.protocol import HEARTBEAT, REPLY_OK, ProtocolError, SubscribeLimits, validate_subscribe
from comet.service import CometService
from comet.stat import (
    CLOSE_CLIENT, CLOSE_FIRST_PACKET, CLOSE_HEARTBEAT, CLOSE_OVERFLOW, CLOSE_PROTOCOL, CLOSE_REJECTED,
    CLOSE_RPC, CLOSE_STOPPING,
)

log = logging.getLogger(__name__)

HEARTBEAT_TEXT = HEARTBEAT.decode()
CLOSE_CODES = {CLOSE_PROTOCOL: 1008, CLOSE_RPC: 1000, CLOSE_STOPPING: 1001, CLOSE_REJECTED: 1000}
ABORT_REASONS = (CLOSE_OVERFLOW, CLOSE_HEARTBEAT, CLOSE_FIRST_PACKET)  # the peer is not listening: no handshake


class WsConnection:
    """One WebSocket client as the channel table sees it (the tornado handler does the I/O)."""

    __slots__ = ("handler", "stream", "peer", "conn_id", "key", "new_form", "subscribed", "close_reason",
                 "_queued", "_max_queue")
    protocol = "ws"

    def __init__(self, handler: WebSocketHandler, stream: IOStream | None, peer: str, max_queue: int) -> None:
        self.handler = handler
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
        return self.write(message.json(self.new_form))

    def write(self, data: bytes) -> bool:
        """Queue one text frame; False (and the connection closes) when the queue is full or it is gone."""
        if self.close_reason is not None:
            return False
        if self._queued >= self._max_queue:
            log.warning("key=%s conn=%d peer=%s: %d frames queued, closing the slow connection",
                        self.key, self.conn_id, self.peer, self._queued)
            self.close(CLOSE_OVERFLOW)
            return False
        try:
            future = self.handler.write_message(data)  # bytes with binary=False: a text frame, sent as is
        except WebSocketClosedError:
            self.close(CLOSE_CLIENT)
            return False
        self._queued += 1
        future.add_done_callback(self._flushed)
        return True

    def _flushed(self, future: "asyncio.Future[None]") -> None:
        self._queued -= 1
        if not future.cancelled():
            future.exception()  # retrieved: a closed connection is handled by on_close

    def close(self, reason: str) -> None:
        if self.close_reason is not None:
            return
        self.close_reason = reason
        if reason in ABORT_REASONS:
            self.abort()
        else:
            self.handler.close(CLOSE_CODES.get(reason, 1000), reason)

    def abort(self) -> None:
        """Drop the TCP connection without a closing handshake."""
        if self.stream is not None:
            self.stream.close()
        else:
            self.handler.close()

    def on_timeout(self) -> None:
        self.close(CLOSE_HEARTBEAT if self.subscribed else CLOSE_FIRST_PACKET)


class SubscribeHandler(WebSocketHandler):
    """``/sub``: one subscribed client per handler."""

    def initialize(self, service: CometService, deadlines: Deadlines[Any], limits: SubscribeLimits,
                   max_queue: int, sessions: set[WsConnection]) -> None:
        self.service = service
        self.deadlines = deadlines
        self.limits = limits
        self.max_queue = max_queue
        self.sessions = sessions
        self.conn: WsConnection | None = None
        self.heartbeat_seconds = 0

    def check_origin(self, origin: str) -> bool:
        return True  # see the module docstring

    def _query(self, name: str) -> bytes:
        values = self.request.query_arguments.get(name)
        return values[0] if values else b""

    def open(self, *args: str, **kwargs: str) -> None:
        self.set_nodelay(True)  # as on TCP: small frames, sent at once
        stream = self.ws_connection.stream if self.ws_connection is not None else None
        conn = self.conn = WsConnection(self, stream, self.request.remote_ip or "?", self.max_queue)
        self.sessions.add(conn)
        try:
            subscribe = validate_subscribe(self._query("key"), self._query("heartbeat"), self._query("token"),
                                           self._query("ver"), self.limits)
        except ProtocolError as exc:
            log.info("conn=%d peer=%s: bad subscribe request: %s", conn.conn_id, conn.peer, exc.reason)
            self.service.stats.refusals[exc.reply.decode().strip()] += 1
            self._refuse(conn, exc.reply)
            return
        conn.key = subscribe.key
        conn.new_form = subscribe.new_form
        reply = self.service.subscribe(conn, subscribe)
        if reply != REPLY_OK:
            log.info("key=%s conn=%d peer=%s: subscribe refused with %r", conn.key, conn.conn_id, conn.peer,
                     reply.strip())
            self._refuse(conn, reply)
            return
        conn.subscribed = True
        conn.write(REPLY_OK)  # before any await: no message can overtake the +h
        self.heartbeat_seconds = subscribe.heartbeat
        self.deadlines.heartbeat(conn, subscribe.heartbeat)
        log.debug("key=%s conn=%d peer=%s: subscribed, heartbeat=%d version=%r", conn.key, conn.conn_id,
                  conn.peer, subscribe.heartbeat, subscribe.version)

    def _refuse(self, conn: WsConnection, reply: bytes) -> None:
        try:
            self.write_message(reply)
        except WebSocketClosedError:
            pass
        conn.close(CLOSE_REJECTED)

    def on_message(self, message: str | bytes) -> None:
        conn = self.conn
        if conn is None or not conn.subscribed or conn.close_reason is not None:
            return
        if message == HEARTBEAT_TEXT or message == HEARTBEAT:
            conn.write(REPLY_OK)
            self.deadlines.heartbeat(conn, self.heartbeat_seconds)
            self.service.stats.heartbeats += 1
            return
        log.info("key=%s conn=%d peer=%s: unexpected frame %r, closing", conn.key, conn.conn_id, conn.peer,
                 message[:16])
        conn.close(CLOSE_PROTOCOL)

    def on_close(self) -> None:
        conn = self.conn
        if conn is None:
            return
        self.sessions.discard(conn)
        self.deadlines.cancel(conn)
        if conn.close_reason is None:  # the client closed, or tornado did (a frame over max_ws_frame: 1009)
            conn.close_reason = CLOSE_CLIENT
        self.service.connection_closed(conn, conn.close_reason, conn.subscribed)
        log.debug("key=%s conn=%d peer=%s: closed (%s, code %s)", conn.key, conn.conn_id, conn.peer,
                  conn.close_reason, self.close_code)
        self.conn = None  # break the handler <-> connection cycle at once


def make_ws_app(service: CometService, deadlines: Deadlines[Any], limits: SubscribeLimits, max_queue: int,
                max_frame: int, sessions: set[WsConnection]) -> tornado.web.Application:
    """The WebSocket listener's routes."""
    handler_args = {"service": service, "deadlines": deadlines, "limits": limits, "max_queue": max_queue,
                    "sessions": sessions}
    return tornado.web.Application([(r"/sub", SubscribeHandler, handler_args)],
                                   websocket_max_message_size=max_frame)
