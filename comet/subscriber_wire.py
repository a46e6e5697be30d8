"""PURE client side of the comet protocols (docs/protocol.md) for the Python subscriber SDK.

No sockets, no event loop: ``comet/subscriber_link.py`` does the I/O and feeds what it reads to the parsers
here, which turn bytes into :data:`Event` values:

* :class:`Ack` — ``+h``: the subscribe was accepted, or a heartbeat was answered;
* :class:`Refused` — ``-p`` / ``-a`` / ``-c`` / ``-n`` (the letter in ``code``): the comet refused and closes;
* :class:`Payload` — one message's JSON bytes (``comet/subscriber_api.py`` parses it);
* :class:`Ping` / :class:`Closed` — WebSocket control frames (a ping needs a pong, a close ends the link).

TCP: the subscribe command is the Redis-style ``*5 $sub $key $heartbeat $token $version`` array; replies are
lines, messages are ``$<len>\\r\\n<json>\\r\\n`` bulk strings. :class:`TcpReplyParser` bounds every length
before buffering it (a line longer than ``MAX_LINE`` or a message longer than ``max_message`` raises
:class:`WireError`).

WebSocket (RFC 6455, client side): :func:`handshake_request` / :func:`check_handshake` for the upgrade,
:func:`client_frame` for the masked frames a client must send, :class:`WsFrameParser` for the unmasked frames
the comet sends (fragments joined, control frames passed through, sizes bounded in the header). The comet's own
``ws_frames`` parser is the server side (it insists on masked frames), so only its constants and ``unmask`` are
shared. The reply frames carry the TCP bytes (``+h\\r\\n``), so both transports yield the same events.
"""
from __future__ import annotations

import struct
from dataclasses import dataclass
from typing import Union
from urllib.parse import urlencode

from comet.protocol import HEARTBEAT
from comet.ws_frames import (
    CONTROL_OPCODES, DATA_OPCODES, FIN, MAX_CONTROL_PAYLOAD, OP_CLOSE, OP_CONTINUATION, OP_PING, OP_TEXT,
    RSV_BITS, close_code, unmask,
)
from comet.ws_handshake import accept_value

CLIENT_VERSION = "1.0"        # sent as the version argument: messages come in the new JSON form
MAX_LINE = 32                 # longest reply / bulk-length line accepted from a comet, CRLF included
MAX_HANDSHAKE_HEAD = 16384    # longest 101 response head accepted
TCP_HEARTBEAT = HEARTBEAT     # what a TCP client sends every heartbeat
REFUSAL_CODES = {"p": "bad parameter", "a": "token refused", "c": "too many connections for this key",
                 "n": "key not served by this comet"}
_LENGTH_16 = struct.Struct(">H")
_LENGTH_64 = struct.Struct(">Q")


class WireError(Exception):
    """The comet sent something this client cannot read: drop the connection."""


@dataclass(frozen=True, slots=True)
class Ack:
    """``+h``: subscribed, or a heartbeat reply."""


@dataclass(frozen=True, slots=True)
class Refused:
    """``-<code>``: the subscribe was refused; the comet closes the connection."""

    code: str

    @property
    def meaning(self) -> str:
        return REFUSAL_CODES.get(self.code, "unknown refusal")


@dataclass(frozen=True, slots=True)
class Payload:
    """One pushed message, as the JSON bytes the comet wrote."""

    data: bytes


@dataclass(frozen=True, slots=True)
class Ping:
    """A WebSocket ping: answer with a pong carrying ``data``."""

    data: bytes


@dataclass(frozen=True, slots=True)
class Closed:
    """A WebSocket close frame from the comet (``code`` None when it carried none)."""

    code: int | None
    reason: str


Event = Union[Ack, Refused, Payload, Ping, Closed]
ACK = Ack()


def reply_event(line: bytes) -> Ack | Refused | None:
    """The event of a reply line without its CRLF (``+h``, ``-n``, ...); None when it is not a reply."""
    if line == b"+h":
        return ACK
    if len(line) == 2 and line[:1] == b"-" and line[1:].isalpha():
        return Refused(line[1:].decode("ascii"))
    return None


# -- TCP ------------------------------------------------------------------------------------------------------

def subscribe_command(key: str, heartbeat: int, token: str = "", version: str = CLIENT_VERSION) -> bytes:
    """The TCP subscribe command: ``sub``, key, heartbeat, token (may be empty), version."""
    args = [b"sub", key.encode("utf-8"), str(heartbeat).encode("ascii"), token.encode("utf-8"),
            version.encode("utf-8")]
    return b"*%d\r\n" % len(args) + b"".join(b"$%d\r\n%b\r\n" % (len(arg), arg) for arg in args)



class TcpReplyParser:
    """Incremental parser of what a comet writes on a TCP connection: reply lines and ``$len`` messages."""

    __slots__ = ("max_message", "_buffer", "_pending_length")

    def __init__(self, max_message: int) -> None:
        self.max_message = max_message
        self._buffer = bytearray()
        self._pending_length: int | None = None  # length of the bulk string being received

    def feed(self, data: bytes) -> list[Event]:
        """Add received bytes; the events they complete, in order."""
        buffer = self._buffer
        buffer += data
        events: list[Event] = []
        pos = 0
        try:
            while True:
                if self._pending_length is not None:
                    end = pos + self._pending_length + 2
                    if len(buffer) < end:
                        return events
                    if buffer[end - 2:end] != b"\r\n":
                        raise WireError("message not followed by CRLF (length mismatch)")
                    events.append(Payload(bytes(buffer[pos:end - 2])))
                    pos, self._pending_length = end, None
                    continue
                newline = buffer.find(b"\n", pos, pos + MAX_LINE)
                if newline < 0:
                    if len(buffer) - pos >= MAX_LINE:
                        raise WireError(f"line longer than {MAX_LINE} bytes: {bytes(buffer[pos:pos + 16])!r}")
                    return events
                if newline == pos or buffer[newline - 1] != 0x0D:
                    raise WireError(f"line without CRLF: {bytes(buffer[pos:newline + 1])!r}")
                line = bytes(buffer[pos:newline - 1])
                pos = newline + 1
                if line[:1] == b"$":
                    self._pending_length = self._length(line[1:])
                    continue
                event = reply_event(line)
                if event is None:
                    raise WireError(f"unexpected line {line[:16]!r}")
                events.append(event)
        finally:
            del buffer[:pos]   # once per read, not once per message

    def _length(self, digits: bytes) -> int:
        if not digits.isdigit():
            raise WireError(f"bad message length {digits[:16]!r}")
        length = int(digits)
        if length > self.max_message:
            raise WireError(f"message of {length} bytes, more than {self.max_message}")
        return length


# -- WebSocket ------------------------------------------------------------------------------------------------

def subscribe_target(key: str, heartbeat: int, token: str = "", version: str = CLIENT_VERSION) -> str:
    """The request target of the WebSocket subscribe: ``/sub?key=K&heartbeat=S[&token=T]&ver=V``."""
    params = [("key", key), ("heartbeat", str(heartbeat))]
    if token:
        params.append(("token", token))
    params.append(("ver", version))
    return "/sub?" + urlencode(params)


def handshake_request(host: str, target: str, ws_key: str) -> bytes:
    """The HTTP/1.1 upgrade request (RFC 6455 section 4.1); ``ws_key`` is base64 of 16 random bytes."""
    return (f"GET {target} HTTP/1.1\r\nHost: {host}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
            f"Sec-WebSocket-Key: {ws_key}\r\nSec-WebSocket-Version: 13\r\n\r\n").encode("utf-8")


def check_handshake(head: bytes, ws_key: str) -> None:
    """Check the comet's response head (without the blank line): a 101 with the right accept value."""
    lines = head.decode("latin-1").split("\r\n")
    status = lines[0].split(" ", 2)
    if len(status) < 2 or not status[0].startswith("HTTP/1.") or status[1] != "101":
        raise WireError(f"upgrade refused: {lines[0][:60]!r}")
    headers: dict[str, str] = {}
    for line in lines[1:]:
        name, _, value = line.partition(":")
        headers[name.strip().lower()] = value.strip()
    if headers.get("upgrade", "").lower() != "websocket":
        raise WireError("upgrade response without 'Upgrade: websocket'")
    if headers.get("sec-websocket-accept") != accept_value(ws_key):
        raise WireError("wrong Sec-WebSocket-Accept")
    if headers.get("sec-websocket-extensions"):
        raise WireError("the comet negotiated an extension this client did not offer")


def client_frame(opcode: int, payload: bytes, mask: bytes) -> bytes:
    """One masked client frame with FIN set (RFC 6455 section 5.2); ``mask`` is 4 random bytes."""
    size = len(payload)
    if size < 126:
        header = bytes((FIN | opcode, 0x80 | size))
    elif size < 1 << 16:
        header = bytes((FIN | opcode, 0x80 | 126)) + _LENGTH_16.pack(size)
    else:
        header = bytes((FIN | opcode, 0x80 | 127)) + _LENGTH_64.pack(size)
    return header + mask + unmask(mask, payload)


def heartbeat_frame(mask: bytes) -> bytes:
    """The WebSocket heartbeat: a text frame ``h``."""
    return client_frame(OP_TEXT, HEARTBEAT, mask)


class WsFrameParser:
    """Incremental parser of the frames a comet sends, turned into events."""

    __slots__ = ("max_message", "_buffer", "_fragment_opcode", "_fragments")

    def __init__(self, max_message: int) -> None:
        self.max_message = max_message
        self._buffer = b""
        self._fragment_opcode = 0
        self._fragments = b""

    def feed(self, data: bytes) -> list[Event]:
        """Add received bytes; the events they complete, in order."""
        buffer = self._buffer + data if self._buffer else data
        events: list[Event] = []
        pos = 0
        while True:
            frame = self._frame_at(buffer, pos)
            if frame is None:
                break
            pos, fin, opcode, payload = frame
            event = self._event(fin, opcode, payload)
            if event is not None:
                events.append(event)
        self._buffer = buffer[pos:]
        return events

    def _frame_at(self, buffer: bytes, pos: int) -> tuple[int, bool, int, bytes] | None:
        if len(buffer) - pos < 2:
            return None
        first, second = buffer[pos], buffer[pos + 1]
        if first & RSV_BITS:
            raise WireError("reserved bits set in a server frame")
        if second & 0x80:
            raise WireError("masked server frame")
        fin, opcode, length = bool(first & FIN), first & 0x0F, second & 0x7F
        if opcode in CONTROL_OPCODES:
            if not fin or length > MAX_CONTROL_PAYLOAD:
                raise WireError("fragmented or oversized control frame")
        elif opcode not in DATA_OPCODES and opcode != OP_CONTINUATION:
            raise WireError(f"unknown opcode {opcode:#x}")
        header = 2
        if length == 126:
            if len(buffer) - pos < 4:
                return None
            length, header = _LENGTH_16.unpack_from(buffer, pos + 2)[0], 4
        elif length == 127:
            if len(buffer) - pos < 10:
                return None
            length, header = _LENGTH_64.unpack_from(buffer, pos + 2)[0], 10
        if length > self.max_message:
            raise WireError(f"frame of {length} bytes, more than {self.max_message}")
        end = pos + header + length
        if len(buffer) < end:
            return None
        return end, fin, opcode, buffer[pos + header:end]

    def _event(self, fin: bool, opcode: int, payload: bytes) -> Event | None:
        if opcode == OP_CLOSE:
            code = close_code(payload)
            return Closed(code, payload[2:].decode("utf-8", "replace"))
        if opcode == OP_PING:
            return Ping(payload)
        if opcode in CONTROL_OPCODES:
            return None  # a pong
        if opcode == OP_CONTINUATION:
            if not self._fragment_opcode:
                raise WireError("continuation frame without a message")
            if len(self._fragments) + len(payload) > self.max_message:
                raise WireError(f"fragmented message longer than {self.max_message} bytes")
            self._fragments += payload
            if not fin:
                return None
            payload, self._fragments, self._fragment_opcode = self._fragments, b"", 0
        elif self._fragment_opcode:
            raise WireError("new message inside a fragmented one")
        elif not fin:
            self._fragment_opcode, self._fragments = opcode, payload
            return None
        if payload.endswith(b"\r\n"):
            reply = reply_event(payload[:-2])
            if reply is not None:
                return reply
        return Payload(payload)
