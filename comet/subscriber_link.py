"""One subscribed connection from the subscriber SDK to a comet, over TCP or WebSocket, plain or TLS (asyncio
streams).

:meth:`CometLink.open` connects, subscribes and waits for the comet's first reply, all within one timeout:
``+h`` gives a link; ``-p/-a/-c/-n`` raises :class:`SubscribeRefusal`. Then :meth:`CometLink.events` returns the
next events (``subscriber_wire.Ack`` for a heartbeat reply, ``Payload`` for a message) and raises
:class:`LinkClosed` when the comet closes the connection or sends a WebSocket close frame;
:meth:`CometLink.heartbeat` sends one heartbeat, :meth:`CometLink.ack` acknowledgements. WebSocket pings are
answered here; the framing and parsing are ``comet/subscriber_wire.py``'s. :meth:`CometLink.close` ends the
connection politely (a close frame over WebSocket), :meth:`CometLink.abort` at once.
"""
from __future__ import annotations

import asyncio
import base64
import logging
import os
import ssl

from comet.ack_codec import tcp_ack, ws_ack
from comet.subscriber_wire import (
    TCP_HEARTBEAT, Ack, Closed, Event, Ping, Refused, TcpReplyParser, WireError, WsFrameParser, check_handshake,
    client_frame, handshake_request, heartbeat_frame, subscribe_command, subscribe_target,
)
from comet.ws_frames import CLOSE_NORMAL, OP_CLOSE, OP_PONG, OP_TEXT, SENDABLE_CODES

log = logging.getLogger(__name__)

READ_SIZE = 65536
CLOSE_WAIT = 1.0  # seconds to wait for the comet's answer to our WebSocket close frame


class LinkClosed(Exception):
    """The connection to the comet ended (closed by it, reset, or unreadable)."""


class SubscribeRefusal(Exception):
    """The comet answered the subscribe with ``-<code>``."""

    def __init__(self, refused: Refused, address: str) -> None:
        super().__init__(f"comet {address} refused the subscribe: -{refused.code} ({refused.meaning})")
        self.code = refused.code


def _mask() -> bytes:
    return os.urandom(4)


class CometLink:
    """A subscribed connection; build it with :meth:`open`."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, *, websocket: bool,
                 parser: TcpReplyParser | WsFrameParser, address: str) -> None:
        self.reader, self.writer = reader, writer
        self.websocket = websocket
        self.address = address
        self._parser = parser
        self._backlog: list[Event] = []
        self._ended: LinkClosed | None = None   # set by a close frame: raised once the events before it are out
        self._closing = False

    @classmethod
    async def open(cls, proto: str, host: str, port: int, *, key: str, heartbeat: int, token: str,
                   timeout: float, max_message: int, tls: ssl.SSLContext | None = None) -> CometLink:
        """Connect to ``host:port`` (over TLS with ``tls``) and subscribe ``key``; SubscribeRefusal, LinkClosed or
        TimeoutError."""
        address = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
        async with asyncio.timeout(timeout):
            try:
                reader, writer = await asyncio.open_connection(host, port, limit=READ_SIZE, ssl=tls,
                                                               server_hostname=host if tls else None)
            except OSError as exc:
                raise LinkClosed(f"cannot connect to comet {address}: {exc.strerror or exc}") from None
            link: CometLink | None = None
            try:
                if proto == "ws":
                    ws_key = base64.b64encode(os.urandom(16)).decode("ascii")
                    writer.write(handshake_request(address, subscribe_target(key, heartbeat, token), ws_key))
                    head = await reader.readuntil(b"\r\n\r\n")
                    check_handshake(head[:-4], ws_key)
                    link = cls(reader, writer, websocket=True, parser=WsFrameParser(max_message), address=address)
                else:
                    writer.write(subscribe_command(key, heartbeat, token))
                    link = cls(reader, writer, websocket=False, parser=TcpReplyParser(max_message),
                               address=address)
                await link._first_reply()
                return link
            except BaseException as exc:
                if link is not None:
                    link.abort()
                else:
                    writer.transport.abort()
                if isinstance(exc, (OSError, asyncio.IncompleteReadError, asyncio.LimitOverrunError, WireError)):
                    raise LinkClosed(f"comet {address}: subscribe failed: {exc or type(exc).__name__}") from None
                raise

    async def _first_reply(self) -> None:
        while True:
            events = await self.events()
            if not events:
                continue
            first = events[0]
            if isinstance(first, Refused):
                raise SubscribeRefusal(first, self.address)
            if not isinstance(first, Ack):
                raise WireError(f"expected the subscribe reply, got {type(first).__name__}")
            self._backlog = events[1:]
            return

    async def events(self) -> list[Event]:
        """The next events (a heartbeat reply, messages; may be empty); LinkClosed when the connection ended."""
        if self._backlog:
            events, self._backlog = self._backlog, []
            return events
        if self._ended is not None:
            raise self._ended
        try:
            data = await self.reader.read(READ_SIZE)
        except OSError as exc:
            raise LinkClosed(f"comet {self.address}: {exc.strerror or exc}") from None
        if not data:
            raise LinkClosed(f"comet {self.address} closed the connection")
        try:
            events = self._parser.feed(data)
        except WireError as exc:
            raise LinkClosed(f"comet {self.address}: unreadable data: {exc}") from None
        out: list[Event] = []
        for event in events:
            if isinstance(event, Ping):
                self._write(client_frame(OP_PONG, event.data, _mask()))
            elif isinstance(event, Closed):
                self._on_close_frame(event)
                break   # nothing valid follows a close frame; the messages before it still count
            else:
                out.append(event)
        return out

    def _on_close_frame(self, event: Closed) -> None:
        """Echo the comet's close frame (RFC 6455 section 5.5.1); the next events() call raises LinkClosed."""
        if not self._closing:
            echo = event.code if event.code in SENDABLE_CODES or 3000 <= (event.code or 0) <= 4999 else None
            self._write(client_frame(OP_CLOSE, b"" if echo is None else echo.to_bytes(2, "big"), _mask()))
        self._ended = LinkClosed(f"comet {self.address} closed the WebSocket: {event.code} {event.reason}".rstrip())

    def heartbeat(self) -> None:
        """Send one heartbeat (its reply arrives as an Ack event)."""
        self._write(heartbeat_frame(_mask()) if self.websocket else TCP_HEARTBEAT)

    def ack(self, mids: list[int]) -> None:
        """Acknowledge ``mids`` in one write (TCP ``*2 $3 ack $n <mid>`` each, WebSocket a text frame ``a<mid>``
        each; never answered)."""
        if self.websocket:
            self._write(b"".join(client_frame(OP_TEXT, ws_ack(mid).encode("ascii"), _mask()) for mid in mids))
        else:
            self._write(b"".join(tcp_ack(mid) for mid in mids))

    def _write(self, data: bytes) -> None:
        if not self.writer.is_closing():
            self.writer.write(data)

    async def close(self) -> None:
        """Close politely: a WebSocket close frame (and a short wait for the answer), then the connection."""
        if self.writer.is_closing():
            return
        self._closing = True
        if self.websocket and self._ended is None:
            self._write(client_frame(OP_CLOSE, CLOSE_NORMAL.to_bytes(2, "big"), _mask()))
            try:
                async with asyncio.timeout(CLOSE_WAIT):
                    while await self.reader.read(READ_SIZE):
                        pass
            except (OSError, TimeoutError):
                pass
        self.writer.close()
        try:
            async with asyncio.timeout(CLOSE_WAIT):   # not wait_for: on Python 3.11 it can swallow a cancellation
                await self.writer.wait_closed()
        except (OSError, TimeoutError):
            pass

    def abort(self) -> None:
        """Drop the connection at once."""
        self.writer.transport.abort()
