"""A small HTTP/1.1 client over asyncio streams, and the web node's public calls; used by both SDKs.

Why not tornado's ``AsyncHTTPClient``: its simple client opens a new connection per request and shares one
global instance per loop (``max_clients``, ``configure``), which an SDK embedded in somebody's application
should not touch. Why not httpx: it would become a runtime dependency for three request shapes. This client
does what the web API needs and nothing else:

* one origin (``http://``, or ``https://`` with the system's trust store or a given ``ssl_context``; optional
  path prefix) per :class:`HttpClient`, keep-alive with a few
  idle connections kept for ``idle_timeout`` seconds (below the web node's 60 s ``limits.idle_timeout``);
* bodies delimited by ``Content-Length``, chunked encoding, or the end of the connection; every size bounded
  (response head 64 KiB, body ``max_body``);
* one timeout per request covering connect, send and receive (:class:`RequestTimeout`);
* a GET that fails on a reused keep-alive connection before any byte of the answer arrived is sent once more
  on a new connection (the server had closed the idle connection); a POST never is, since it may have been
  applied.

:class:`WebApi` is the public listener's ``/1/server/get`` and ``/1/msg/get``.
"""
from __future__ import annotations

import asyncio
import logging
import ssl
import time
from dataclasses import dataclass
from typing import Mapping
from urllib.parse import quote, urlencode, urlsplit

from comet.subscriber_api import FetchPage, RequestTimeout, TransportError, parse_envelope, parse_fetch, parse_server

log = logging.getLogger(__name__)

MAX_HEAD = 64 * 1024
MAX_CHUNK_LINE = 1024
HEX_DIGITS = b"0123456789abcdefABCDEF"
USER_AGENT = "pushcluster-sdk/0.1"
PROTO_NUMBERS = {"ws": 1, "tcp": 2}  # the p / proto parameter of /server/get


@dataclass(frozen=True, slots=True)
class HttpResponse:
    status: int
    headers: dict[str, str]  # lower-case names; repeated headers joined with ","
    body: bytes


class _Connection:
    __slots__ = ("reader", "writer", "idle_since")

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader, self.writer = reader, writer
        self.idle_since = 0.0

    def usable(self, now: float, idle_timeout: float) -> bool:
        return not (self.reader.at_eof() or self.writer.is_closing() or now - self.idle_since > idle_timeout)

    async def close(self) -> None:
        self.writer.close()
        try:
            async with asyncio.timeout(1.0):
                await self.writer.wait_closed()
        except (OSError, TimeoutError):
            pass


class _Unsent(Exception):
    """A reused connection failed before any byte of the answer: safe to send a GET again."""


class HttpClient:
    """HTTP/1.1 keep-alive client of one origin; see the module docstring."""

    def __init__(self, base_url: str, *, timeout: float = 10.0, max_body: int = 8 << 20, max_idle: int = 4,
                 idle_timeout: float = 30.0, headers: Mapping[str, str] | None = None,
                 ssl_context: ssl.SSLContext | None = None) -> None:
        parts = urlsplit(base_url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(f"not an http(s) URL: {base_url!r}")
        self.host = parts.hostname
        self.port = parts.port or (443 if parts.scheme == "https" else 80)
        self.prefix = parts.path.rstrip("/")
        self.ssl: ssl.SSLContext | None = None
        if parts.scheme == "https":
            self.ssl = ssl_context or ssl.create_default_context()
        host = f"[{self.host}]" if ":" in self.host else self.host
        self.authority = host if parts.port is None else f"{host}:{self.port}"
        self.timeout, self.max_body, self.max_idle, self.idle_timeout = timeout, max_body, max_idle, idle_timeout
        self.headers = _checked({"User-Agent": USER_AGENT, "Accept": "application/json", **(headers or {})})
        self._idle: list[_Connection] = []
        self._closed = False

    def __repr__(self) -> str:
        return f"HttpClient({'https' if self.ssl else 'http'}://{self.authority}{self.prefix})"

    async def request(self, method: str, path: str, *, query: Mapping[str, str | int] | None = None,
                      body: bytes | None = None, headers: Mapping[str, str] | None = None,
                      timeout: float | None = None) -> HttpResponse:
        """Send one request; TransportError (RequestTimeout) when no complete answer came."""
        if self._closed:
            raise TransportError(f"{self!r} is closed")
        target = quote(self.prefix + path, safe="/%") + ("?" + urlencode(query) if query else "")
        head = [f"{method} {target} HTTP/1.1", f"Host: {self.authority}"]
        head.extend(f"{name}: {value}" for name, value in {**self.headers, **_checked(headers or {})}.items())
        if body is not None or method == "POST":
            head.append(f"Content-Length: {len(body or b'')}")
        data = ("\r\n".join(head) + "\r\n\r\n").encode("utf-8") + (body or b"")
        try:
            async with asyncio.timeout(self.timeout if timeout is None else timeout):
                try:
                    return await self._exchange(data, method, reuse=True)
                except _Unsent:
                    if method != "GET":
                        raise TransportError(f"{method} {path}: keep-alive connection closed by the server, "
                                             "the request may not have been sent") from None
                    return await self._exchange(data, method, reuse=False)
        except TimeoutError:
            raise RequestTimeout(f"{method} {path}: no answer from {self.authority} in time") from None

    async def _exchange(self, data: bytes, method: str, reuse: bool) -> HttpResponse:
        conn, reused = await self._acquire(reuse)
        keep = False
        got_bytes = False
        try:
            conn.writer.write(data)
            await conn.writer.drain()
            status_line = await conn.reader.readline()
            got_bytes = bool(status_line)
            response, keep = await self._read_response(conn.reader, status_line, method)
            return response
        except (OSError, asyncio.IncompleteReadError, asyncio.LimitOverrunError, ValueError) as exc:
            if reused and not got_bytes:
                raise _Unsent() from exc
            raise TransportError(f"{method}: {self.authority}: {exc or type(exc).__name__}") from None
        finally:
            if keep and not self._closed and len(self._idle) < self.max_idle:
                conn.idle_since = time.monotonic()
                self._idle.append(conn)
            else:
                await conn.close()

    async def _acquire(self, reuse: bool) -> tuple[_Connection, bool]:
        now = time.monotonic()
        while reuse and self._idle:
            conn = self._idle.pop()
            if conn.usable(now, self.idle_timeout):
                return conn, True
            await conn.close()
        try:
            reader, writer = await asyncio.open_connection(
                self.host, self.port, ssl=self.ssl, server_hostname=self.host if self.ssl else None, limit=MAX_HEAD)
        except OSError as exc:
            raise TransportError(f"cannot connect to {self.authority}: {exc.strerror or exc}") from None
        return _Connection(reader, writer), False

    async def _read_response(self, reader: asyncio.StreamReader, status_line: bytes,
                             method: str) -> tuple[HttpResponse, bool]:
        """The response and whether its connection can be reused."""
        while True:
            version, status = _status(status_line)
            headers = await _headers(reader)
            if status >= 200:
                break
            status_line = await reader.readline()  # 1xx: an interim answer, the real one follows
        keep = version == "HTTP/1.1" and "close" not in headers.get("connection", "").lower()
        if method == "HEAD" or status in (204, 304):
            return HttpResponse(status, headers, b""), keep
        if "chunked" in headers.get("transfer-encoding", "").lower():
            return HttpResponse(status, headers, await self._chunked(reader)), keep
        length = headers.get("content-length")
        if length is not None:
            if not length.isdigit() or int(length) > self.max_body:
                raise ValueError(f"bad or too large Content-Length {length[:20]!r}")
            return HttpResponse(status, headers, await reader.readexactly(int(length))), keep
        body = bytearray()   # delimited by the end of the connection
        while len(body) <= self.max_body:
            chunk = await reader.read(65536)
            if not chunk:
                break
            body += chunk
        if len(body) > self.max_body:
            raise ValueError(f"response body larger than {self.max_body} bytes")
        return HttpResponse(status, headers, bytes(body)), False

    async def _chunked(self, reader: asyncio.StreamReader) -> bytes:
        chunks: list[bytes] = []
        total = 0
        while True:
            line = await reader.readuntil(b"\r\n")
            size_text = line[:-2].split(b";", 1)[0].strip()
            if len(line) > MAX_CHUNK_LINE or not size_text or size_text.strip(HEX_DIGITS):
                raise ValueError(f"bad chunk size line {line[:20]!r}")
            size = int(size_text, 16)
            if size == 0:
                await _headers(reader)  # trailers, up to the blank line
                return b"".join(chunks)
            total += size
            if total > self.max_body:
                raise ValueError(f"response body larger than {self.max_body} bytes")
            chunks.append(await reader.readexactly(size))
            if await reader.readexactly(2) != b"\r\n":
                raise ValueError("chunk not followed by CRLF")

    async def close_idle(self) -> None:
        """Close the connections kept for the next requests (a later request opens a new one)."""
        idle, self._idle = self._idle, []
        for conn in idle:
            await conn.close()

    async def close(self) -> None:
        """Close the idle connections; requests after this fail."""
        self._closed = True
        await self.close_idle()


def _checked(headers: Mapping[str, str]) -> dict[str, str]:
    """The headers, refused (ValueError) if a name or value could end the line: no header injection."""
    for name, value in headers.items():
        if any(ch in "\r\n\0" for ch in name + value) or ":" in name:
            raise ValueError(f"header {name[:40]!r} has a forbidden character")
    return dict(headers)


def _status(line: bytes) -> tuple[str, int]:
    parts = line.decode("latin-1").rstrip("\r\n").split(" ", 2)
    if len(parts) < 2 or not parts[0].startswith("HTTP/1.") or not parts[1].isdigit() or len(parts[1]) != 3:
        raise ValueError(f"not an HTTP status line: {line[:40]!r}")
    return parts[0], int(parts[1])


async def _headers(reader: asyncio.StreamReader) -> dict[str, str]:
    head = await reader.readuntil(b"\r\n")
    headers: dict[str, str] = {}
    size = len(head)
    while head != b"\r\n":
        name, sep, value = head.decode("latin-1").partition(":")
        if not sep:
            raise ValueError(f"malformed header line {head[:40]!r}")
        name, value = name.strip().lower(), value.strip()
        headers[name] = f"{headers[name]},{value}" if name in headers else value
        head = await reader.readuntil(b"\r\n")
        size += len(head)
        if size > MAX_HEAD:
            raise ValueError(f"response head longer than {MAX_HEAD} bytes")
    return headers


class WebApi:
    """The public listener's calls a client makes (docs/openapi.yaml, ``/1/`` routes)."""

    def __init__(self, http: HttpClient) -> None:
        self.http = http

    async def server_for(self, key: str, proto: str = "tcp") -> tuple[str, int]:
        """``(host, port)`` of the comet serving ``key`` for ``proto`` ("tcp" or "ws")."""
        if proto not in PROTO_NUMBERS:
            raise ValueError(f"proto must be 'tcp' or 'ws', not {proto!r}")
        response = await self.http.request("GET", "/1/server/get", query={"k": key, "p": PROTO_NUMBERS[proto]})
        return parse_server(parse_envelope(response.status, response.body))

    async def fetch(self, key: str, mid: int, pmid: int | None = None) -> FetchPage:
        """One page of stored messages of ``key`` with a mid above ``mid``, ascending; with ``pmid`` also the
        public messages (gid 1) with a mid above it (``FetchPage.public``)."""
        query: dict[str, str | int] = {"k": key, "m": mid}
        if pmid is not None:
            query["p"] = pmid
        response = await self.http.request("GET", "/1/msg/get", query=query)
        return parse_fetch(key, response.status, response.body)
