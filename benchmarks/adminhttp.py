"""Admin API calls made by a scenario itself (not by the load generator): raw keep-alive HTTP/1.1 connections.

A scenario that sets up state or times single requests end to end (tagging keys, one ``/push/tags``, one page
of ``/tag/keys``) calls the web's admin listener from its own event loop through :class:`AdminHttp`: each
connection is a :class:`benchmarks.httpclient.HttpConn` (25-40 µs of client CPU per request, where
``httpx.AsyncClient`` costs about 1 ms and would slow the tagging of 10,000 keys down to the client's pace).
A reply that is not HTTP 200 with ``"ret":0`` raises :class:`AdminCallFailed` and is counted in ``failed``.
"""
from __future__ import annotations

import asyncio
import json
from typing import Any, Awaitable, Callable, Sequence, TypeVar

from benchmarks.httpclient import HttpConn

T = TypeVar("T")
CALL_TIMEOUT = 60.0


class AdminCallFailed(RuntimeError):
    """An admin request that did not succeed (HTTP status other than 200, ret != 0, or no reply in time)."""


class AdminHttp:
    """Connections to one admin listener; ``call`` sends a request on one of them and returns the reply's data."""

    def __init__(self, port: int, host: str = "127.0.0.1") -> None:
        self.host = host
        self.port = port
        self.conns: list[HttpConn] = []
        self.calls = 0
        self.failed = 0
        self._head = f"Host: {host}:{port}\r\n".encode()

    async def open(self, count: int) -> None:
        loop = asyncio.get_running_loop()
        for _ in range(count - len(self.conns)):
            _, conn = await loop.create_connection(HttpConn, self.host, self.port)
            self.conns.append(conn)

    def close(self) -> None:
        for conn in self.conns:
            if conn.transport is not None:
                conn.transport.close()
        self.conns = []

    async def call(self, method: str, path: str, body: bytes = b"", conn: int = 0) -> Any:
        """One request on connection ``conn``; the envelope's ``data``."""
        if method == "GET":
            request = b"GET %s HTTP/1.1\r\n%s\r\n" % (path.encode(), self._head)
        else:
            request = b"%s %s HTTP/1.1\r\n%sContent-Length: %d\r\n\r\n%s" % (
                method.encode(), path.encode(), self._head, len(body), body)
        self.calls += 1
        try:
            status, reply = await asyncio.wait_for(self.conns[conn].request(request), CALL_TIMEOUT)
        except (ConnectionError, asyncio.TimeoutError) as exc:
            self.failed += 1
            raise AdminCallFailed(f"{method} {path[:80]}: {exc!r}") from None
        doc = json.loads(reply) if status == 200 else None
        if not isinstance(doc, dict) or doc.get("ret") != 0:
            self.failed += 1
            raise AdminCallFailed(f"{method} {path[:80]}: HTTP {status} {reply[:200]!r}")
        return doc.get("data")

    async def each(self, items: Sequence[T], work: Callable[[T, int], Awaitable[None]]) -> None:
        """``work(item, conn)`` for every item, one request in flight per connection (bounded concurrency)."""
        queue = iter(items)

        async def runner(conn: int) -> None:
            for item in queue:
                await work(item, conn)

        await asyncio.gather(*(runner(conn) for conn in range(len(self.conns))))
