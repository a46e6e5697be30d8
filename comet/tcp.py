"""The TCP client transport (DESIGN.md section 4): subscribe, heartbeats, messages as ``$len`` bulk strings.

Every read goes to ``data_received``: first to a ``protocol.SubscribeParser`` until the subscribe command is
complete (within the first-packet timeout), then, once the service admitted it and ``+h`` went out, to
``ack_codec.parse_tcp_input``: each ``h`` is answered with ``+h`` and moves the heartbeat deadline (heartbeat +
grace seconds); each ack command (``*2 $3 ack $n <mid>``) goes to the service, unanswered; a malformed command
gets ``-p`` and the connection closes; any other byte closes it without a reply. An ack command split across reads
is kept (at most ``ack_codec.MAX_TCP_ACK`` bytes, in the slot the subscribe parser used) until the rest arrives.
A refused subscribe gets its ``-x`` reply, flushed, then the connection closes. Writes, deadlines and the queue
limit are ``connection.ClientConnection``'s.
"""
from __future__ import annotations

import logging

from comet.ack_codec import parse_tcp_input
from comet.connection import ClientConnection, ClientContext
from comet.message_codec import wire_form
from comet.protocol import ProtocolError, SubscribeParser
from comet.stat import CLOSE_PROTOCOL, CLOSE_REJECTED

log = logging.getLogger(__name__)


class TcpConnection(ClientConnection):
    """One TCP client."""

    __slots__ = ("_input",)
    protocol = "tcp"

    def __init__(self, ctx: ClientContext) -> None:
        super().__init__(ctx)
        # the subscribe parser until subscribed; then the start of an ack command split across reads (or b"")
        self._input: SubscribeParser | bytes | None = SubscribeParser(ctx.limits)

    def data_received(self, data: bytes) -> None:
        try:
            if self.subscribed:
                if self.close_reason is None:
                    self._client_input(data)
            elif isinstance(self._input, SubscribeParser):
                self._subscribe(self._input, data)
        except ProtocolError as exc:
            log.info("key=%s conn=%d peer=%s: %s, closing", self.key, self.conn_id, self.peer, exc.reason)
            if exc.reply and self.close_reason is None:
                self.close_reason = CLOSE_PROTOCOL
                self.transport.write(exc.reply)
                self.transport.close()
            else:
                self.close(CLOSE_PROTOCOL)
        except Exception:
            log.error("key=%s conn=%d peer=%s: unexpected error", self.key, self.conn_id, self.peer, exc_info=True)
            self.close(CLOSE_PROTOCOL)

    def _client_input(self, data: bytes) -> None:
        """Heartbeats and acks (see the module docstring)."""
        rest = self._input
        if isinstance(rest, bytes) and rest:
            data = rest + data
        parsed = parse_tcp_input(data)
        self._input = parsed.rest
        if parsed.heartbeats:
            self.heartbeats(parsed.heartbeats)
        if parsed.acks and self.close_reason is None:
            self.acknowledged(parsed.acks)

    def _subscribe(self, parser: SubscribeParser, data: bytes) -> None:
        try:
            subscribe = parser.feed(data)
        except ProtocolError as exc:
            self._input = None
            log.info("conn=%d peer=%s: bad subscribe command: %s", self.conn_id, self.peer, exc.reason)
            self.ctx.service.stats.refusals[exc.reply.decode().strip()] += 1
            self.refuse(exc.reply)
            return
        if subscribe is None:
            return
        self._input = b""
        if self.admit(subscribe, wire_form(False, subscribe.new_form)) and parser.remainder:
            self._client_input(parser.remainder)

    def reply_bytes(self, reply: bytes) -> bytes:
        return reply

    def refuse(self, reply: bytes, prefix: bytes = b"") -> None:
        """Send the reply, then close once it is flushed (the first-packet deadline bounds a client that never
        reads)."""
        self.close_reason = CLOSE_REJECTED
        self.transport.write(prefix + reply)
        self.transport.close()

    def shut(self, reason: str) -> None:
        self.transport.abort()  # the buffered rest is dropped: the client is gone, slow or told to go
