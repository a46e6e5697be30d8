"""The WebSocket client transport (DESIGN.md section 4): ``GET /sub?key=K&heartbeat=S[&token=T][&ver=V]``.

The connection parses its upgrade request itself (``ws_handshake``, within the first-packet timeout) and then
speaks frames through ``ws_frames``: after the handshake it keeps only a frame parser, no HTTP machinery. A
request that cannot be upgraded gets an HTTP error status (400, 404, 405, 426, 431) and is closed. An upgrade
is always accepted; then the query parameters are checked with the TCP rules (``protocol.validate_subscribe``)
and the reply goes out as one text frame, in the same write as the 101 response: ``+h\\r\\n`` on success, else
``-p\\r\\n`` / ``-a\\r\\n`` / ``-c\\r\\n`` / ``-n\\r\\n`` followed by a close frame (1000). The reply bytes are the
TCP ones, CRLF included, exactly as gopush-cluster's WebSocket server wrote them (its browser SDK looks only at
the first character).

The heartbeat is a text frame ``h`` (a binary ``h`` is accepted too, as gopush-cluster did), answered with a
``+h\\r\\n`` text frame; an ack is a frame ``a<mid>`` (``ack_codec.parse_ws_ack``), not answered; a ping is
answered with a pong; any other data frame, or a malformed ack, closes the connection (1008); a
frame or message larger than ``limits.max_ws_frame`` closes it with 1009, a broken frame with 1002. Each pushed
message is one text frame holding the message JSON, encoded once per message and shared by every connection.

Closing: the side that closes sends a close frame and the other answers with one; the comet then closes the TCP
connection. A peer that does not answer within ``CLOSE_TIMEOUT`` seconds is dropped. A node that stops sends
1001; a connection that overflowed its queue or missed its deadline is dropped without a closing handshake.

Any ``Origin`` is accepted: browsers connect from the application's own pages, on other origins than the
comet's, and the key is not a secret the comet protects: a subscribe token (the ``token`` query parameter,
checked when the comet has secrets, ``comet/auth.py``) is what proves the right to a key. Over TLS (wss://) the
listener's transport is the event loop's TLS transport; nothing here changes.
"""
from __future__ import annotations

import logging

from comet.ack_codec import WS_ACK_PREFIX, parse_ws_ack
from comet.connection import ClientConnection, ClientContext
from comet.message_codec import wire_form
from comet.protocol import HEARTBEAT, REPLY_OK, ProtocolError, validate_subscribe
from comet.stat import (
    CLOSE_ACK_FLOOD, CLOSE_CLIENT, CLOSE_FIRST_PACKET, CLOSE_HEARTBEAT, CLOSE_HEARTBEAT_FLOOD, CLOSE_OVERFLOW,
    CLOSE_PROTOCOL, CLOSE_REJECTED, CLOSE_RPC, CLOSE_STOPPING,
)
from comet.ws_frames import (
    CLOSE_GOING_AWAY, CLOSE_NORMAL, CLOSE_POLICY_VIOLATION, DATA_OPCODES, OP_CLOSE, OP_PING, FrameError, FrameParser,
    close_frame, close_reply, pong_frame, text_frame,
)
from comet.ws_handshake import HandshakeError, RequestHeadParser, UpgradeRequest, parse_upgrade

log = logging.getLogger(__name__)

CLOSE_TIMEOUT = 5.0  # seconds a peer has to answer our close frame
CLOSE_CODES = {CLOSE_PROTOCOL: CLOSE_POLICY_VIOLATION, CLOSE_RPC: CLOSE_NORMAL, CLOSE_STOPPING: CLOSE_GOING_AWAY,
               CLOSE_REJECTED: CLOSE_NORMAL, CLOSE_HEARTBEAT_FLOOD: CLOSE_POLICY_VIOLATION,
               CLOSE_ACK_FLOOD: CLOSE_POLICY_VIOLATION}
ABORT_REASONS = (CLOSE_OVERFLOW, CLOSE_HEARTBEAT, CLOSE_FIRST_PACKET)  # the peer is not listening: no handshake
WS_REPLY_OK = text_frame(REPLY_OK)


class WsConnection(ClientConnection):
    """One WebSocket client: the upgrade request, then frames."""

    __slots__ = ("_head", "_frames")
    protocol = "ws"

    def __init__(self, ctx: ClientContext) -> None:
        super().__init__(ctx)
        self._head: RequestHeadParser | None = RequestHeadParser()  # until the request head is complete
        self._frames: FrameParser | None = None                      # after the 101

    def data_received(self, data: bytes) -> None:
        try:
            if self._frames is not None:
                self._on_frames(self._frames, data)
            elif self._head is not None:
                self._on_head(self._head, data)
        except FrameError as exc:
            log.info("key=%s conn=%d peer=%s: %s, closing with %d", self.key, self.conn_id, self.peer, exc.reason,
                     exc.code)
            self._fail(exc.code)
        except HandshakeError as exc:
            log.info("conn=%d peer=%s: upgrade refused with %d: %s", self.conn_id, self.peer, exc.status, exc.reason)
            self._head = None
            self.close_reason = CLOSE_PROTOCOL
            self.transport.write(exc.response())
            self.transport.close()
        except Exception:
            log.error("key=%s conn=%d peer=%s: unexpected error", self.key, self.conn_id, self.peer, exc_info=True)
            self.close(CLOSE_PROTOCOL)

    def _on_head(self, parser: RequestHeadParser, data: bytes) -> None:
        parsed = parser.feed(data)
        if parsed is None:
            return
        head, rest = parsed
        request = parse_upgrade(head)
        self._head = None
        frames = self._frames = FrameParser(self.ctx.max_ws_frame)
        self._subscribe(request)
        if rest and not self.transport.is_closing():
            self._on_frames(frames, rest)

    def _subscribe(self, request: UpgradeRequest) -> None:
        handshake = request.response()
        try:
            subscribe = validate_subscribe(request.param("key"), request.param("heartbeat"), request.param("token"),
                                           request.param("ver"), self.ctx.limits)
        except ProtocolError as exc:
            log.info("conn=%d peer=%s: bad subscribe request: %s", self.conn_id, self.peer, exc.reason)
            self.ctx.service.stats.refusals[exc.reply.decode().strip()] += 1
            self.refuse(exc.reply, handshake)
            return
        self.admit(subscribe, wire_form(True, subscribe.new_form), handshake)

    def _on_frames(self, parser: FrameParser, data: bytes) -> None:
        beats = 0
        acks: list[int] = []
        for opcode, payload in parser.feed(data):
            if opcode == OP_CLOSE:
                self._on_close_frame(payload)
                break
            if self.close_reason is not None:
                continue  # closing: only the peer's close frame matters now
            if opcode == OP_PING:
                self.write(pong_frame(payload))
            elif opcode in DATA_OPCODES:
                if payload == HEARTBEAT and self.subscribed:
                    beats += 1
                    continue
                if payload.startswith(WS_ACK_PREFIX) and self.subscribed:
                    try:
                        acks.append(parse_ws_ack(payload))
                        continue
                    except ProtocolError as exc:
                        log.info("key=%s conn=%d peer=%s: %s, closing", self.key, self.conn_id, self.peer,
                                 exc.reason)
                else:
                    log.info("key=%s conn=%d peer=%s: unexpected frame %r, closing", self.key, self.conn_id,
                             self.peer, payload[:16])
                self.close(CLOSE_PROTOCOL)
            # a pong needs no answer
        if beats and self.close_reason is None:
            self.heartbeats(beats)
        if acks and self.close_reason is None:
            self.acknowledged(acks)

    def _on_close_frame(self, payload: bytes) -> None:
        """The peer's close frame: the answer to ours, or its own close, which we echo (RFC 6455 5.5.1)."""
        if self.close_reason is None:
            self.close_reason = CLOSE_CLIENT
            self.transport.write(close_reply(payload))
        self._frames = None
        self.transport.close()

    def _fail(self, code: int) -> None:
        """Close with a protocol-level code (1002, 1009) after a framing error (drop it if already closing)."""
        if self.close_reason is None:
            self.close_reason = CLOSE_PROTOCOL
            self._send_close(code, CLOSE_PROTOCOL)
        else:
            self.abort()

    def _send_close(self, code: int, reason: str) -> None:
        self.transport.write(close_frame(code, reason))
        self.ctx.deadlines.after(self, CLOSE_TIMEOUT)

    def reply_bytes(self, reply: bytes) -> bytes:
        return WS_REPLY_OK if reply == REPLY_OK else text_frame(reply)

    def refuse(self, reply: bytes, prefix: bytes = b"") -> None:
        """The reply frame (after the 101 in ``prefix``), then a close frame (1000)."""
        self.close_reason = CLOSE_REJECTED
        self.transport.write(prefix + text_frame(reply))
        self._send_close(CLOSE_NORMAL, CLOSE_REJECTED)

    def shut(self, reason: str) -> None:
        if self._frames is None or reason in ABORT_REASONS:
            self.transport.abort()
        else:
            self._send_close(CLOSE_CODES.get(reason, CLOSE_NORMAL), reason)
