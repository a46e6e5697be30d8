"""Lean subscriber clients for the load generator: raw asyncio protocols for comet TCP and WebSocket.

A load-generator process holds 9,000+ of these, so each is one ``asyncio.Protocol`` with ``__slots__`` and no
task, no timer and no future after its handshake. The TCP subscribe command is built from the project's own
pieces (``comet.message_codec.tcp_frame`` for each ``$len`` argument, ``comet.protocol`` reply constants).
The WebSocket client does the RFC 6455 upgrade (checking ``Sec-WebSocket-Accept``), reads unmasked server
frames and sends masked ``h`` heartbeats; nothing else of the protocol is needed here.

Every message received goes to the process-wide :data:`RECORDER`: a count, first/last receive time, and the
push-to-receive latency when the payload carries ``"t":<time.monotonic_ns() of the sender>`` (CLOCK_MONOTONIC
is one clock for every process of a Linux machine; ``loadgen`` checks it at start).
"""
from __future__ import annotations

import asyncio
import base64
import hashlib
import os
import time
from typing import Any, cast

from comet.message_codec import tcp_frame
from comet.protocol import HEARTBEAT, REPLY_OK

WS_GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
MAX_SAMPLES = 400_000  # latency samples kept per process and measurement (bounded memory)
_MASK = os.urandom(4)
WS_HEARTBEAT = bytes([0x81, 0x80 | len(HEARTBEAT)]) + _MASK + bytes([HEARTBEAT[0] ^ _MASK[0]])
WS_PONG_EMPTY = bytes([0x8A, 0x80]) + _MASK
WS_CLOSE = bytes([0x88, 0x80]) + _MASK


class Recorder:
    """What this process's subscribers received since the last :meth:`reset`."""

    def __init__(self) -> None:
        self.reset()
        self.skip: bytes | None = None  # messages containing this are not recorded (a probe leaves out broadcasts)
        self.lost = 0       # connections closed by the server or the network (not by us)
        self.refused = 0    # handshakes answered with something else than +h

    def reset(self, since_ns: int = 0) -> None:
        """Start counting again; keep latency samples only of messages stamped at or after ``since_ns``."""
        self.since_ns = since_ns
        self.count = 0
        self.first_ns = 0
        self.last_ns = 0
        self.samples: list[int] = []
        self.heartbeat_replies = 0

    def on_message(self, payload: bytes) -> None:
        now = time.monotonic_ns()
        if self.skip is not None and self.skip in payload:
            return
        self.count += 1
        self.last_ns = now
        if not self.first_ns:
            self.first_ns = now
        start = payload.find(b'"t":')
        if start >= 0 and len(self.samples) < MAX_SAMPLES:
            start += 4
            end = start
            while end < len(payload) and 48 <= payload[end] <= 57:
                end += 1
            if end > start:
                stamp = int(payload[start:end])
                if stamp >= self.since_ns:
                    self.samples.append(now - stamp)

    def snapshot(self) -> dict[str, Any]:
        return {"count": self.count, "first_ns": self.first_ns, "last_ns": self.last_ns, "samples": self.samples,
                "heartbeat_replies": self.heartbeat_replies, "lost": self.lost, "refused": self.refused}


RECORDER = Recorder()


def tcp_subscribe_command(key: str, heartbeat: int, version: str = "1.0") -> bytes:
    """``*5 sub key heartbeat token version`` in the comet's Redis-style framing."""
    args = [b"sub", key.encode(), str(heartbeat).encode(), b"", version.encode()]
    return b"*%d\r\n" % len(args) + b"".join(tcp_frame(arg) for arg in args)


class Subscriber(asyncio.Protocol):
    """Common part: the transport, a partial-frame buffer and the handshake future (dropped once subscribed)."""

    __slots__ = ("transport", "buf", "waiter")

    def __init__(self, waiter: asyncio.Future[None]) -> None:
        self.transport: asyncio.Transport | None = None
        self.buf = b""
        self.waiter: asyncio.Future[None] | None = waiter

    def _subscribed(self, reply: bytes) -> None:
        waiter, self.waiter = self.waiter, None
        if waiter is None or waiter.done():
            return
        if reply == REPLY_OK:
            waiter.set_result(None)
        else:
            RECORDER.refused += 1
            waiter.set_exception(ConnectionRefusedError(f"subscribe refused: {reply!r}"))

    def connection_lost(self, exc: Exception | None) -> None:
        if self.transport is None:
            return
        self.transport = None
        if self.waiter is not None and not self.waiter.done():
            self.waiter.set_exception(ConnectionResetError("closed during the handshake"))
        self.waiter = None
        RECORDER.lost += 1

    def close(self) -> None:
        transport, self.transport = self.transport, None
        if transport is not None:
            transport.close()

    def heartbeat(self) -> None:
        raise NotImplementedError


class TcpSubscriber(Subscriber):
    """``+h\\r\\n`` replies and ``$len\\r\\n<json>\\r\\n`` messages."""

    __slots__ = ()

    def __init__(self, waiter: asyncio.Future[None], command: bytes) -> None:
        super().__init__(waiter)
        self.buf = command  # sent by connection_made, then reused as the receive buffer

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)  # uvloop's transports are not asyncio subclasses
        self.transport.write(self.buf)
        self.buf = b""

    def heartbeat(self) -> None:
        if self.transport is not None:
            self.transport.write(HEARTBEAT)

    def data_received(self, data: bytes) -> None:
        if self.buf:
            data, self.buf = self.buf + data, b""
        pos, size = 0, len(data)
        while pos < size:
            first = data[pos]
            if first == 0x2B or first == 0x2D:  # "+h\r\n" (subscribed / heartbeat reply) or a "-x\r\n" refusal
                if size - pos < 4:
                    break
                if self.waiter is not None:
                    self._subscribed(data[pos:pos + 4])
                else:
                    RECORDER.heartbeat_replies += 1
                pos += 4
            elif first == 0x24:  # "$len\r\n<json>\r\n"
                eol = data.find(b"\r\n", pos)
                if eol < 0:
                    break
                end = eol + 2 + int(data[pos + 1:eol])
                if end + 2 > size:
                    break
                RECORDER.on_message(data[eol + 2:end])
                pos = end + 2
            else:
                self.close()
                return
        if pos < size:
            self.buf = data[pos:]


class WsSubscriber(Subscriber):
    """RFC 6455 client: the upgrade, then text frames (``+h\\r\\n`` replies and message JSON)."""

    __slots__ = ("request", "accept")

    def __init__(self, waiter: asyncio.Future[None], host: str, port: int, key: str, heartbeat: int) -> None:
        super().__init__(waiter)
        nonce = base64.b64encode(os.urandom(16))
        self.accept: bytes | None = base64.b64encode(hashlib.sha1(nonce + WS_GUID).digest())
        self.request = (b"GET /sub?key=%s&heartbeat=%d&ver=1 HTTP/1.1\r\nHost: %s:%d\r\nUpgrade: websocket\r\n"
                        b"Connection: Upgrade\r\nSec-WebSocket-Key: %s\r\nSec-WebSocket-Version: 13\r\n\r\n"
                        % (key.encode(), heartbeat, host.encode(), port, nonce))

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)  # uvloop's transports are not asyncio subclasses
        self.transport.write(self.request)
        self.request = b""

    def heartbeat(self) -> None:
        if self.transport is not None:
            self.transport.write(WS_HEARTBEAT)

    def data_received(self, data: bytes) -> None:
        if self.buf:
            data, self.buf = self.buf + data, b""
        pos = 0
        if self.accept is not None:  # still reading the HTTP upgrade response
            end = data.find(b"\r\n\r\n")
            if end < 0:
                self.buf = data
                return
            head = data[:end]
            if not head.startswith(b"HTTP/1.1 101") or self.accept not in head:
                self._subscribed(head.split(b"\r\n", 1)[0])
                self.close()
                return
            self.accept = None
            pos = end + 4
        size = len(data)
        while size - pos >= 2:
            opcode, length, header = data[pos] & 0x0F, data[pos + 1] & 0x7F, 2
            if length == 126:
                if size - pos < 4:
                    break
                length, header = int.from_bytes(data[pos + 2:pos + 4], "big"), 4
            elif length == 127:
                if size - pos < 10:
                    break
                length, header = int.from_bytes(data[pos + 2:pos + 10], "big"), 10
            end = pos + header + length
            if end > size:
                break
            self._frame(opcode, data[pos + header:end])
            pos = end
        if pos < size:
            self.buf = data[pos:]

    def _frame(self, opcode: int, payload: bytes) -> None:
        if opcode in (1, 2):
            if self.waiter is not None:
                self._subscribed(payload)
            elif payload == REPLY_OK:
                RECORDER.heartbeat_replies += 1
            else:
                RECORDER.on_message(payload)
        elif opcode == 8 and self.transport is not None:
            self.transport.write(WS_CLOSE)
            self.close()
        elif opcode == 9 and self.transport is not None:
            self.transport.write(WS_PONG_EMPTY)
