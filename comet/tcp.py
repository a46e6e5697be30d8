"""The TCP client transport (DESIGN.md section 4): subscribe, heartbeats, messages as ``$len`` bulk strings.

Every read goes to ``data_received``: first to a ``protocol.SubscribeParser`` until the subscribe command is
complete (within the first-packet timeout), then, once the service admitted it and ``+h`` went out, to
``protocol.count_heartbeats``: each ``h`` is answered with ``+h`` and moves the heartbeat deadline (heartbeat +
grace seconds); any other byte closes the connection without a reply. A refused subscribe gets its ``-x`` reply,
flushed, then the connection closes. Writes, deadlines and the queue limit are ``connection.ClientConnection``'s.
"""
from __future__ import annotations

import logging

from comet.connection import ClientConnection, ClientContext
from comet.message_codec import wire_form
from comet.protocol import ProtocolError, SubscribeParser, count_heartbeats
from comet.stat import CLOSE_PROTOCOL, CLOSE_REJECTED

log = logging.getLogger(__name__)


class TcpConnection(ClientConnection):
    """One TCP client."""

    __slots__ = ("_parser",)
    protocol = "tcp"

    def __init__(self, ctx: ClientContext) -> None:
        super().__init__(ctx)
        self._parser: SubscribeParser | None = SubscribeParser(ctx.limits)  # dropped once subscribed

    def data_received(self, data: bytes) -> None:
        try:
            if self.subscribed:
                if self.close_reason is None:
                    self.heartbeats(count_heartbeats(data))
            elif self._parser is not None:
                self._subscribe(self._parser, data)
        except ProtocolError as exc:
            log.info("key=%s conn=%d peer=%s: %s, closing", self.key, self.conn_id, self.peer, exc.reason)
            self.close(CLOSE_PROTOCOL)
        except Exception:
            log.error("key=%s conn=%d peer=%s: unexpected error", self.key, self.conn_id, self.peer, exc_info=True)
            self.close(CLOSE_PROTOCOL)

    def _subscribe(self, parser: SubscribeParser, data: bytes) -> None:
        try:
            subscribe = parser.feed(data)
        except ProtocolError as exc:
            self._parser = None
            log.info("conn=%d peer=%s: bad subscribe command: %s", self.conn_id, self.peer, exc.reason)
            self.ctx.service.stats.refusals[exc.reply.decode().strip()] += 1
            self.refuse(exc.reply)
            return
        if subscribe is None:
            return
        self._parser = None
        if self.admit(subscribe, wire_form(False, subscribe.new_form)) and parser.remainder:
            self.heartbeats(count_heartbeats(parser.remainder))

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
