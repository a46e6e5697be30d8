"""PURE WebSocket opening handshake (RFC 6455 section 4) of the comet's ``GET /sub`` endpoint.

No sockets, no event loop. :class:`RequestHeadParser` collects the HTTP request head from whatever the socket
returned (at most ``MAX_REQUEST_HEAD`` bytes) and :func:`parse_upgrade` checks it the way tornado's
``WebSocketHandler`` did, so clients see the same status codes:

* not ``GET``: 405; another path than ``/sub``: 404; a malformed request line or header: 400;
* ``Upgrade`` not ``websocket``, ``Connection`` without the ``upgrade`` token, or ``Host`` /
  ``Sec-WebSocket-Key`` / ``Sec-WebSocket-Version`` missing: 400;
* a ``Sec-WebSocket-Version`` other than 7, 8 or 13: 426 with ``Sec-WebSocket-Version: 7, 8, 13``;
* a head longer than ``MAX_REQUEST_HEAD``: 431.

Any ``Origin`` is accepted (see comet/websocket.py). No extension (permessage-deflate) and no subprotocol is
ever negotiated: the 101 response carries neither header, which every client must accept. The query string is
decoded like tornado's ``parse_qs_bytes``: values are the raw bytes, so the subscribe checks see invalid UTF-8.
"""
from __future__ import annotations

import base64
import hashlib
import re
from dataclasses import dataclass
from http import HTTPStatus
from urllib.parse import parse_qs

MAX_REQUEST_HEAD = 64 * 1024  # as tornado's default max_header_size: room for long tokens and cookies
SUB_PATH = "/sub"
SUPPORTED_VERSIONS = ("7", "8", "13")
WS_GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
_HEAD_END = re.compile(rb"\r?\n\r?\n")
_REQUEST_LINE = re.compile(r"([A-Z]+) (\S+) HTTP/1\.\d")
_TOKEN = re.compile(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")  # a header name (RFC 9110 section 5.6.2)


class HandshakeError(Exception):
    """The request cannot be upgraded: answer ``response()`` and close."""

    def __init__(self, status: int, reason: str, headers: tuple[tuple[str, str], ...] = ()) -> None:
        super().__init__(reason)
        self.status = status
        self.reason = reason
        self.headers = headers

    def response(self) -> bytes:
        """A complete HTTP/1.1 error response that closes the connection."""
        phrase = HTTPStatus(self.status).phrase
        body = f"{self.status}: {phrase}\n".encode()
        lines = [f"HTTP/1.1 {self.status} {phrase}", "Content-Type: text/plain; charset=utf-8",
                 f"Content-Length: {len(body)}", "Connection: close"]
        lines.extend(f"{name}: {value}" for name, value in self.headers)
        return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + body


@dataclass(frozen=True, slots=True)
class UpgradeRequest:
    """A valid upgrade request to ``/sub``: its query parameters and the ``Sec-WebSocket-Accept`` to answer."""

    query: dict[str, list[bytes]]
    accept: str

    def param(self, name: str) -> bytes:
        """The first value of query parameter ``name`` (b"" when absent)."""
        values = self.query.get(name)
        return values[0] if values else b""

    def response(self) -> bytes:
        """The 101 response that completes the handshake."""
        return (b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                b"Sec-WebSocket-Accept: " + self.accept.encode("ascii") + b"\r\n\r\n")


def accept_value(key: str) -> str:
    """``Sec-WebSocket-Accept`` for a ``Sec-WebSocket-Key`` (RFC 6455 section 4.2.2, item 5.4)."""
    return base64.b64encode(hashlib.sha1(key.encode("latin-1") + WS_GUID).digest()).decode("ascii")


def _headers(lines: list[str]) -> dict[str, str]:
    headers: dict[str, str] = {}
    last = ""
    for line in lines:
        if line[:1] in (" ", "\t") and last:  # obsolete line folding: continues the previous value
            headers[last] += " " + line.strip()
            continue
        name, sep, value = line.partition(":")
        if not sep or _TOKEN.fullmatch(name) is None:
            raise HandshakeError(400, f"malformed header line {line[:40]!r}")
        name, value = name.lower(), value.strip()
        headers[name] = f"{headers[name]},{value}" if name in headers else value
        last = name
    return headers


def parse_upgrade(head: bytes) -> UpgradeRequest:
    """Check a request head (without the blank line); HandshakeError tells what to answer when it fails."""
    lines = head.decode("latin-1").replace("\r\n", "\n").split("\n")
    match = _REQUEST_LINE.fullmatch(lines[0])
    if match is None:
        raise HandshakeError(400, f"malformed request line {lines[0][:40]!r}")
    method, target = match.groups()
    path, _, query = target.partition("?")
    if path != SUB_PATH:
        raise HandshakeError(404, f"no such path {path[:40]!r}")
    if method != "GET":
        raise HandshakeError(405, f"method {method} not allowed", (("Allow", "GET"),))
    headers = _headers(lines[1:])
    if headers.get("upgrade", "").lower() != "websocket":
        raise HandshakeError(400, 'can "Upgrade" only to "WebSocket"')
    if "upgrade" not in (token.strip().lower() for token in headers.get("connection", "").split(",")):
        raise HandshakeError(400, '"Connection" must be "Upgrade"')
    if not all(headers.get(name) for name in ("host", "sec-websocket-key", "sec-websocket-version")):
        raise HandshakeError(400, "missing WebSocket headers")
    if headers["sec-websocket-version"] not in SUPPORTED_VERSIONS:
        raise HandshakeError(426, f"WebSocket version {headers['sec-websocket-version'][:10]!r} not supported",
                             (("Sec-WebSocket-Version", ", ".join(SUPPORTED_VERSIONS)),))
    params = parse_qs(query, keep_blank_values=True, encoding="latin-1", errors="strict")
    return UpgradeRequest({name: [value.encode("latin-1") for value in values] for name, values in params.items()},
                          accept_value(headers["sec-websocket-key"]))


class RequestHeadParser:
    """Collects one request head; ``feed`` returns (head, bytes after it) once the blank line has arrived."""

    __slots__ = ("_buffer",)

    def __init__(self) -> None:
        self._buffer = b""

    def feed(self, data: bytes) -> tuple[bytes, bytes] | None:
        """Add received bytes; HandshakeError(431) when the head grows past MAX_REQUEST_HEAD."""
        start = max(0, len(self._buffer) - 3)  # the end marker may straddle two reads
        buffer = self._buffer = self._buffer + data
        match = _HEAD_END.search(buffer, start)
        if match is None:
            if len(buffer) > MAX_REQUEST_HEAD:
                raise HandshakeError(431, f"request head longer than {MAX_REQUEST_HEAD} bytes")
            self._buffer = buffer
            return None
        if match.start() > MAX_REQUEST_HEAD:
            raise HandshakeError(431, f"request head longer than {MAX_REQUEST_HEAD} bytes")
        self._buffer = b""
        return buffer[:match.start()], buffer[match.end():]
