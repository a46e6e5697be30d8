"""PURE WebSocket framing (RFC 6455 section 5) for the comet: parse client frames, encode server frames.

No sockets, no event loop. :class:`FrameParser` takes whatever the socket returned (a frame split over many
reads, several frames in one read) and yields complete messages as ``(opcode, payload)``: text and binary
messages with their fragments joined (continuation frames, section 5.4), control frames (ping, pong, close) as
they come, even between the fragments of a message. A violation raises :class:`FrameError` carrying the close
code to send:

* 1002 (protocol error): an unmasked frame (a client must mask, section 5.1), reserved bits set (no extension
  is ever negotiated), an unknown opcode, a fragmented or oversized (> 125 bytes) control frame, a continuation
  without a message to continue, a new message inside a fragmented one, a 1-byte close payload;
* 1009 (message too big): a data frame or a joined message longer than ``max_size`` bytes. The length is
  checked in the frame header, before any payload is buffered, so a parser holds at most one frame (``max_size``
  bytes, or 125 for a control frame, plus a 14-byte header) and one joined message of ``max_size`` bytes.

The encoders build server frames: unmasked (section 5.1), FIN set, never fragmented.
"""
from __future__ import annotations

import struct

OP_CONTINUATION = 0x0
OP_TEXT = 0x1
OP_BINARY = 0x2
OP_CLOSE = 0x8
OP_PING = 0x9
OP_PONG = 0xA
DATA_OPCODES = (OP_TEXT, OP_BINARY)
CONTROL_OPCODES = (OP_CLOSE, OP_PING, OP_PONG)

FIN = 0x80
RSV_BITS = 0x70
MASK_BIT = 0x80
MAX_CONTROL_PAYLOAD = 125
MAX_HEADER = 14  # 2 + 8 (64-bit length) + 4 (mask)

CLOSE_NORMAL = 1000
CLOSE_GOING_AWAY = 1001
CLOSE_PROTOCOL_ERROR = 1002
CLOSE_POLICY_VIOLATION = 1008
CLOSE_TOO_BIG = 1009
SENDABLE_CODES = frozenset((1000, 1001, 1002, 1003, 1007, 1008, 1009, 1010, 1011))  # defined for close frames

_LENGTH_16 = struct.Struct(">H")
_LENGTH_64 = struct.Struct(">Q")


class FrameError(Exception):
    """The client broke RFC 6455: close the connection with ``code``."""

    def __init__(self, code: int, reason: str) -> None:
        super().__init__(reason)
        self.code = code
        self.reason = reason


def unmask(mask: bytes, payload: bytes) -> bytes:
    """XOR ``payload`` with the 4-byte ``mask`` repeated (section 5.3), as one big-integer operation."""
    size = len(payload)
    if not size:
        return b""
    key = (mask * (size // 4 + 1))[:size]
    return (int.from_bytes(payload, "big") ^ int.from_bytes(key, "big")).to_bytes(size, "big")


class FrameParser:
    """Incremental parser of the frames one client sends; see the module docstring."""

    __slots__ = ("max_size", "_buffer", "_fragment_opcode", "_fragments")

    def __init__(self, max_size: int) -> None:
        if max_size < 1:
            raise ValueError("max_size must be >= 1")
        self.max_size = max_size
        self._buffer = b""          # bytes of a frame not complete yet
        self._fragment_opcode = 0   # opcode of the fragmented message being joined (0: none)
        self._fragments = b""       # its payload so far

    def feed(self, data: bytes) -> list[tuple[int, bytes]]:
        """Add received bytes; return the messages completed by them, in order (often none)."""
        buffer = self._buffer + data if self._buffer else data
        messages: list[tuple[int, bytes]] = []
        pos = 0
        while True:
            frame = self._frame_at(buffer, pos)
            if frame is None:
                break
            pos, fin, opcode, payload = frame
            message = self._message(fin, opcode, payload)
            if message is not None:
                messages.append(message)
        self._buffer = buffer[pos:] if pos < len(buffer) else b""
        return messages

    def _frame_at(self, buffer: bytes, pos: int) -> tuple[int, bool, int, bytes] | None:
        """The frame starting at ``pos`` as (end, fin, opcode, unmasked payload); None when incomplete."""
        available = len(buffer) - pos
        if available < 2:
            return None
        first, second = buffer[pos], buffer[pos + 1]
        if first & RSV_BITS:
            raise FrameError(CLOSE_PROTOCOL_ERROR, "reserved bits set without an extension")
        if not second & MASK_BIT:
            raise FrameError(CLOSE_PROTOCOL_ERROR, "client frame is not masked")
        fin, opcode, length = bool(first & FIN), first & 0x0F, second & 0x7F
        if opcode in CONTROL_OPCODES:
            if not fin or length > MAX_CONTROL_PAYLOAD:
                raise FrameError(CLOSE_PROTOCOL_ERROR, "fragmented or oversized control frame")
        elif opcode not in DATA_OPCODES and opcode != OP_CONTINUATION:
            raise FrameError(CLOSE_PROTOCOL_ERROR, f"unknown opcode {opcode:#x}")
        header = 2
        if length == 126:
            if available < 4:
                return None
            length = _LENGTH_16.unpack_from(buffer, pos + 2)[0]
            header = 4
        elif length == 127:
            if available < 10:
                return None
            length = _LENGTH_64.unpack_from(buffer, pos + 2)[0]
            header = 10
        if length > self.max_size and opcode not in CONTROL_OPCODES:
            raise FrameError(CLOSE_TOO_BIG, f"frame of {length} bytes, more than {self.max_size}")
        start = pos + header + 4
        end = start + length
        if len(buffer) < end:
            return None
        return end, fin, opcode, unmask(buffer[start - 4:start], buffer[start:end])

    def _message(self, fin: bool, opcode: int, payload: bytes) -> tuple[int, bytes] | None:
        """Join fragments (section 5.4); return a complete message, or None while one is being joined."""
        if opcode in CONTROL_OPCODES:
            if opcode == OP_CLOSE and len(payload) == 1:
                raise FrameError(CLOSE_PROTOCOL_ERROR, "close payload of 1 byte")
            return opcode, payload
        if opcode == OP_CONTINUATION:
            if not self._fragment_opcode:
                raise FrameError(CLOSE_PROTOCOL_ERROR, "continuation frame without a message")
            if len(self._fragments) + len(payload) > self.max_size:
                raise FrameError(CLOSE_TOO_BIG, f"fragmented message longer than {self.max_size} bytes")
            self._fragments += payload
            if not fin:
                return None
            opcode, payload = self._fragment_opcode, self._fragments
            self._fragment_opcode, self._fragments = 0, b""
            return opcode, payload
        if self._fragment_opcode:
            raise FrameError(CLOSE_PROTOCOL_ERROR, "new message inside a fragmented one")
        if not fin:
            self._fragment_opcode, self._fragments = opcode, payload
            return None
        return opcode, payload


def encode_frame(opcode: int, payload: bytes) -> bytes:
    """One unmasked server frame with FIN set."""
    size = len(payload)
    if size < 126:
        return bytes((FIN | opcode, size)) + payload
    if size < 1 << 16:
        return bytes((FIN | opcode, 126)) + _LENGTH_16.pack(size) + payload
    return bytes((FIN | opcode, 127)) + _LENGTH_64.pack(size) + payload


def text_frame(payload: bytes) -> bytes:
    """A text frame; ``payload`` must be UTF-8 (the comet's replies and message JSON are)."""
    return encode_frame(OP_TEXT, payload)


def pong_frame(payload: bytes) -> bytes:
    """The answer to a ping: a pong with the ping's payload (section 5.5.3)."""
    return encode_frame(OP_PONG, payload)


def close_frame(code: int | None = None, reason: str = "") -> bytes:
    """A close frame: empty without a code, else the code and a UTF-8 reason cut to fit 125 bytes."""
    if code is None:
        return encode_frame(OP_CLOSE, b"")
    text = reason.encode("utf-8")[:MAX_CONTROL_PAYLOAD - 2]
    return encode_frame(OP_CLOSE, _LENGTH_16.pack(code) + text.decode("utf-8", "ignore").encode("utf-8"))


def close_code(payload: bytes) -> int | None:
    """The status code of a received close frame's payload, or None when it carries none."""
    return _LENGTH_16.unpack_from(payload)[0] if len(payload) >= 2 else None


def close_reply(payload: bytes) -> bytes:
    """Our answer to a peer's close frame: its code echoed (section 5.5.1), or 1002 for a code that must not be
    sent (section 7.4), or an empty close frame when it carried no code."""
    code = close_code(payload)
    if code is None:
        return close_frame()
    if code in SENDABLE_CODES or 3000 <= code <= 4999:
        return close_frame(code)
    return close_frame(CLOSE_PROTOCOL_ERROR)
