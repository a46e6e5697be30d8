"""PURE codec of the comet client protocol (DESIGN.md section 4): the TCP subscribe command, replies, heartbeats.

No sockets, no event loop. ``SubscribeParser.feed(data)`` takes whatever the socket returned (any split, the
command merged with the first heartbeats) and returns a :class:`Subscribe` once the whole command has arrived;
bytes received after the command are kept in ``parser.remainder``. Anything malformed or over a limit raises
:class:`ProtocolError` carrying the reply to send (``-p``) before closing. The command layout::

    *<argc>\\r\\n                   argc = 1..max_argc
    $<len>\\r\\n<arg bytes>\\r\\n     argc times, len = 0..max_arg_bytes
    args: "sub", key, heartbeat seconds, [token], [version]

Every length is checked before its bytes are buffered, so a parser never holds more than one header line
(``MAX_HEADER_LINE`` bytes) or one argument plus its CRLF. :func:`validate_subscribe` checks the key and
heartbeat; the WebSocket transport calls it with its query parameters. After ``+h``, a TCP client sends only
the byte ``h``: :func:`count_heartbeats` counts them and rejects anything else.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

REPLY_OK = b"+h\r\n"       # subscribed; also the answer to every heartbeat
REPLY_PARAM = b"-p\r\n"    # bad parameter
REPLY_AUTH = b"-a\r\n"     # token refused
REPLY_CHANNEL = b"-c\r\n"  # no channel: the key has the maximum number of connections
REPLY_NODE = b"-n\r\n"     # the key is not served by this node

HEARTBEAT = b"h"
SUBSCRIBE_COMMAND = b"sub"
CRLF = b"\r\n"
ARGC_PREFIX = b"*"[0]
LENGTH_PREFIX = b"$"[0]
MAX_LENGTH_DIGITS = 10
MAX_HEADER_LINE = 1 + MAX_LENGTH_DIGITS + len(CRLF)  # "*<digits>\r\n" / "$<digits>\r\n"
MIN_SUB_ARGC = 3  # sub, key, heartbeat
MAX_SUB_ARGC = 5  # + token, version


class ProtocolError(Exception):
    """The client broke the protocol: send ``reply`` (if not empty), then close the connection."""

    def __init__(self, reason: str, reply: bytes = REPLY_PARAM) -> None:
        super().__init__(reason)
        self.reason = reason
        self.reply = reply


@dataclass(frozen=True, slots=True)
class SubscribeLimits:
    """Bounds on a subscribe command (defaults as in DESIGN.md section 4)."""

    max_argc: int = MAX_SUB_ARGC
    max_arg_bytes: int = 4096
    max_key_bytes: int = 128
    min_heartbeat: int = 30
    max_heartbeat: int = 3600


DEFAULT_LIMITS = SubscribeLimits()


@dataclass(frozen=True, slots=True)
class Subscribe:
    """A valid subscribe request. ``version`` "" means none was sent: messages use the old JSON form."""

    key: str
    heartbeat: int
    token: str = ""
    version: str = ""

    @property
    def new_form(self) -> bool:
        return bool(self.version)


def _decode(value: bytes, name: str) -> str:
    try:
        return value.decode("utf-8")
    except UnicodeDecodeError:
        raise ProtocolError(f"{name} is not valid UTF-8") from None


def _has_control(text: str) -> bool:
    return not text.isprintable() and any(ch < " " or ch == "\x7f" for ch in text)


def validate_subscribe(key: bytes, heartbeat: bytes, token: bytes = b"", version: bytes = b"",
                       limits: SubscribeLimits = DEFAULT_LIMITS) -> Subscribe:
    """Check the subscribe parameters (raw bytes, from TCP arguments or WebSocket query values)."""
    if not key:
        raise ProtocolError("key is empty")
    if len(key) > limits.max_key_bytes:
        raise ProtocolError(f"key is {len(key)} bytes, more than {limits.max_key_bytes}")
    key_text = _decode(key, "key")
    if _has_control(key_text):
        raise ProtocolError("key contains control characters")
    for name, value in (("heartbeat", heartbeat), ("token", token), ("version", version)):
        if len(value) > limits.max_arg_bytes:
            raise ProtocolError(f"{name} is {len(value)} bytes, more than {limits.max_arg_bytes}")
    if not heartbeat.isdigit() or len(heartbeat) > MAX_LENGTH_DIGITS:  # bytes.isdigit: ASCII digits only
        raise ProtocolError(f"heartbeat {heartbeat[:16]!r} is not a decimal integer")
    seconds = int(heartbeat)
    if not limits.min_heartbeat <= seconds <= limits.max_heartbeat:
        raise ProtocolError(f"heartbeat {seconds} is not {limits.min_heartbeat}..{limits.max_heartbeat} seconds")
    return Subscribe(key_text, seconds, _decode(token, "token"), _decode(version, "version"))


def parse_command(args: Sequence[bytes], limits: SubscribeLimits = DEFAULT_LIMITS) -> Subscribe:
    """A complete command's arguments -> Subscribe; anything but ``sub key heartbeat [token [version]]`` fails."""
    if not args or args[0] != SUBSCRIBE_COMMAND:
        command = args[0][:16] if args else b""
        raise ProtocolError(f"unknown command {command!r}")
    if not MIN_SUB_ARGC <= len(args) <= MAX_SUB_ARGC:
        raise ProtocolError(f"sub takes {MIN_SUB_ARGC}..{MAX_SUB_ARGC} arguments, got {len(args)}")
    token = args[3] if len(args) > 3 else b""
    version = args[4] if len(args) > 4 else b""
    return validate_subscribe(args[1], args[2], token, version, limits)


class SubscribeParser:
    """Incremental parser of one TCP subscribe command; see the module docstring for the layout."""

    __slots__ = ("limits", "remainder", "_buffer", "_argc", "_arg_len", "_args", "_done")

    def __init__(self, limits: SubscribeLimits = DEFAULT_LIMITS) -> None:
        self.limits = limits
        self.remainder = b""  # bytes after the command (typically heartbeats), once it is complete
        self._buffer = bytearray()
        self._argc: int | None = None
        self._arg_len: int | None = None
        self._args: list[bytes] = []
        self._done = False

    def feed(self, data: bytes) -> Subscribe | None:
        """Add received bytes; return the Subscribe when the command is complete, else None."""
        if self._done:
            raise RuntimeError("the subscribe command was already parsed")
        self._buffer += data
        while True:
            if self._argc is None:
                argc = self._take_number(ARGC_PREFIX, "argument count")
                if argc is None:
                    return None
                if not 1 <= argc <= self.limits.max_argc:
                    raise ProtocolError(f"argument count {argc} is not 1..{self.limits.max_argc}")
                self._argc = argc
            elif len(self._args) == self._argc:
                return self._finish()
            elif self._arg_len is None:
                length = self._take_number(LENGTH_PREFIX, "argument length")
                if length is None:
                    return None
                if length > self.limits.max_arg_bytes:
                    raise ProtocolError(f"argument of {length} bytes, more than {self.limits.max_arg_bytes}")
                self._arg_len = length
            else:
                end = self._arg_len + len(CRLF)
                if len(self._buffer) < end:
                    return None
                if self._buffer[self._arg_len:end] != CRLF:
                    raise ProtocolError("argument is not followed by CRLF (length mismatch)")
                self._args.append(bytes(self._buffer[:self._arg_len]))
                del self._buffer[:end]
                self._arg_len = None

    def _finish(self) -> Subscribe:
        self._done = True
        self.remainder = bytes(self._buffer)
        self._buffer = bytearray()
        return parse_command(self._args, self.limits)

    def _take_number(self, prefix: int, what: str) -> int | None:
        """Consume one ``<prefix><digits>\\r\\n`` line; None until it is complete."""
        buffer = self._buffer
        if buffer and buffer[0] != prefix:
            raise ProtocolError(f"{what}: expected {chr(prefix)!r}, got {bytes(buffer[:1])!r}")
        end = buffer.find(b"\n", 0, MAX_HEADER_LINE)
        if end < 0:
            if len(buffer) >= MAX_HEADER_LINE:
                raise ProtocolError(f"{what}: line longer than {MAX_HEADER_LINE} bytes")
            return None
        digits = bytes(buffer[1:end - 1])
        if end < 3 or buffer[end - 1] != CRLF[0] or not digits.isdigit():
            raise ProtocolError(f"{what}: malformed line {bytes(buffer[:end + 1])!r}")
        del buffer[:end + 1]
        return int(digits)


def count_heartbeats(data: bytes) -> int:
    """The number of heartbeats in bytes received after subscribing; any byte but ``h`` is a violation."""
    count = data.count(HEARTBEAT)
    if count != len(data):
        raise ProtocolError(f"unexpected bytes after subscribe: {data[:16]!r}", reply=b"")
    return count
