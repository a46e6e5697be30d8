"""PURE codec of what a client sends after it subscribed: heartbeats and message acknowledgements (docs/protocol.md).

TCP: any mix of the heartbeat byte ``h`` and ack commands in the subscribe command's format::

    *2\\r\\n$3\\r\\nack\\r\\n$<n>\\r\\n<mid>\\r\\n        n = 1..19, mid = n ASCII digits, 1..2**63-1

:func:`parse_tcp_input` takes what one read returned (after any ``rest`` kept from the read before: a command may
be split anywhere) and returns the heartbeats, the acknowledged mids and the incomplete command at the end (at
most ``MAX_TCP_ACK`` bytes). A malformed command raises ``ProtocolError`` with the ``-p`` reply; a byte that
starts neither a heartbeat nor a command raises it with no reply (closed as before acks existed).

WebSocket: a text (or binary) frame ``a<mid>``, e.g. ``a17160000000000001``; :func:`parse_ws_ack`.

Clients that only send ``h`` see no change: a read of heartbeats alone takes the old, fastest path.
"""
from __future__ import annotations

from dataclasses import dataclass, field

from comet.protocol import HEARTBEAT, ProtocolError

TCP_ACK_PREFIX = b"*2\r\n$3\r\nack\r\n$"
WS_ACK_PREFIX = b"a"
COMMAND_START = b"*"
MAX_MID = (1 << 63) - 1
MAX_MID_DIGITS = 19
MAX_TCP_ACK = len(TCP_ACK_PREFIX) + 2 + 2 + MAX_MID_DIGITS + 2  # prefix, "19", CRLF, digits, CRLF


@dataclass(slots=True)
class ClientInput:
    """What one read carried."""

    heartbeats: int = 0
    acks: list[int] = field(default_factory=list)
    rest: bytes = b""  # the start of a command that the next read completes


def tcp_ack(mid: int) -> bytes:
    """The TCP ack command for ``mid`` (for clients and tests)."""
    digits = b"%d" % mid
    return b"%b%d\r\n%b\r\n" % (TCP_ACK_PREFIX, len(digits), digits)


def ws_ack(mid: int) -> str:
    """The WebSocket ack frame's text for ``mid``."""
    return f"a{mid}"


def _mid(digits: bytes) -> int:
    if not 1 <= len(digits) <= MAX_MID_DIGITS or not digits.isdigit():
        raise ProtocolError(f"ack: mid {digits[:24]!r} is not 1..{MAX_MID_DIGITS} digits")
    mid = int(digits)
    if not 1 <= mid <= MAX_MID:
        raise ProtocolError(f"ack: mid {mid} is not 1..{MAX_MID}")
    return mid


def _command(data: bytes, start: int) -> tuple[int, int] | None:
    """The ack command at ``data[start]`` (a ``*``): (mid, index after it), or None when it is incomplete."""
    prefix = data[start:start + len(TCP_ACK_PREFIX)]
    if prefix != TCP_ACK_PREFIX[:len(prefix)]:
        raise ProtocolError(f"unknown command after subscribe: {data[start:start + 16]!r}")
    if len(prefix) < len(TCP_ACK_PREFIX):
        return None
    head = start + len(TCP_ACK_PREFIX)
    crlf = data.find(b"\r\n", head, head + 4)
    if crlf < 0:  # the length line is incomplete: at most "19\r" so far
        partial = data[head:head + 4]
        digits = partial[:-1] if partial.endswith(b"\r") else partial
        if partial and (len(partial) >= 4 or len(digits) > 2 or not digits.isdigit()):
            raise ProtocolError(f"ack: malformed length line {data[head - 1:head + 8]!r}")
        return None
    size_digits = data[head:crlf]
    if not size_digits.isdigit() or not 1 <= int(size_digits) <= MAX_MID_DIGITS:
        raise ProtocolError(f"ack: mid length {size_digits[:8]!r} is not 1..{MAX_MID_DIGITS}")
    begin = crlf + 2
    end = begin + int(size_digits)
    if len(data) < end + 2:
        if not data[begin:end].isdigit() and len(data) > begin:
            raise ProtocolError(f"ack: mid {data[begin:end][:24]!r} is not digits")
        return None
    if data[end:end + 2] != b"\r\n":
        raise ProtocolError("ack: the mid is not followed by CRLF (length mismatch)")
    return _mid(data[begin:end]), end + 2


def parse_tcp_input(data: bytes) -> ClientInput:
    """Heartbeats and acks in ``data`` (see the module docstring)."""
    result = ClientInput()
    if COMMAND_START not in data:  # heartbeats only: the old protocol
        count = data.count(HEARTBEAT)
        if count != len(data):
            raise ProtocolError(f"unexpected bytes after subscribe: {data[:16]!r}", reply=b"")
        result.heartbeats = count
        return result
    index = 0
    while index < len(data):
        star = data.find(COMMAND_START, index)
        stop = len(data) if star < 0 else star
        beats = data.count(HEARTBEAT, index, stop)
        if beats != stop - index:
            raise ProtocolError(f"unexpected bytes after subscribe: {data[index:index + 16]!r}", reply=b"")
        result.heartbeats += beats
        if star < 0:
            break
        parsed = _command(data, star)
        if parsed is None:
            result.rest = data[star:]
            break
        mid, index = parsed
        result.acks.append(mid)
    return result


def parse_ws_ack(payload: bytes) -> int:
    """The mid of a WebSocket ack frame ``a<mid>``; ProtocolError for anything else."""
    if not payload.startswith(WS_ACK_PREFIX):
        raise ProtocolError(f"unexpected frame {payload[:16]!r}")
    return _mid(payload[len(WS_ACK_PREFIX):])
