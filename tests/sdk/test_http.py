"""The SDKs' HTTP/1.1 client (comet/subscriber_http.py) against canned answers of a raw socket server: the response
shapes tornado never sends (chunked, delimited by close, interim 1xx) and the broken ones."""
from __future__ import annotations

import asyncio
import contextlib
from typing import AsyncIterator

import pytest

from comet.subscriber_api import TransportError
from comet.subscriber_http import HttpClient


class CannedServer:
    """Answers each request with the next canned bytes (then closes if the answer says so); records requests."""

    def __init__(self, answers: list[bytes], close_after: bool = False) -> None:
        self.answers, self.close_after = list(answers), close_after
        self.requests: list[bytes] = []
        self.connections = 0
        self.port = 0
        self._server: asyncio.Server | None = None
        self._writers: list[asyncio.StreamWriter] = []

    async def start(self) -> CannedServer:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        self._writers.append(writer)
        try:
            while self.answers:
                head = await reader.readuntil(b"\r\n\r\n")
                length = next((int(line.split(b":")[1]) for line in head.split(b"\r\n")
                               if line.lower().startswith(b"content-length:")), 0)
                self.requests.append(head + await reader.readexactly(length))
                answer = self.answers.pop(0)
                if not answer:   # b"": close without answering (a keep-alive connection the server dropped)
                    break
                writer.write(answer)
                await writer.drain()
                if self.close_after:
                    break
        except (asyncio.IncompleteReadError, OSError):
            pass
        writer.close()

    async def close(self) -> None:
        assert self._server is not None
        self._server.close()
        for writer in self._writers:
            writer.close()
            with contextlib.suppress(OSError):
                await writer.wait_closed()
        await self._server.wait_closed()


@pytest.fixture
async def canned() -> AsyncIterator[list[CannedServer]]:
    servers: list[CannedServer] = []
    yield servers
    for server in servers:
        await server.close()


async def serve(canned: list[CannedServer], *answers: bytes, close_after: bool = False) -> HttpClient:
    server = await CannedServer(list(answers), close_after).start()
    canned.append(server)
    return HttpClient(f"http://127.0.0.1:{server.port}/prefix/", timeout=2, max_body=1000)


async def test_body_shapes_and_keep_alive(canned: list[CannedServer]) -> None:
    client = await serve(canned,
                         b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello",
                         b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
                         b"3;ext=1\r\nabc\r\nA\r\n0123456789\r\n0\r\nTrailer: x\r\n\r\n",
                         b"HTTP/1.1 204 No Content\r\n\r\n",
                         b"HTTP/1.0 200 OK\r\nX-A: 1\r\nX-A: 2\r\n\r\nuntil the end")
    try:
        first = await client.request("GET", "/a b", query={"k": "é&x", "m": 7})
        assert (first.status, first.body) == (200, b"hello")
        assert (await client.request("POST", "/c", body=b"{}")).body == b"abc0123456789"
        assert (await client.request("GET", "/d")).status == 204
        last = await client.request("GET", "/e")
        assert (last.body, last.headers["x-a"]) == (b"until the end", "1,2")
    finally:
        await client.close()
    server = canned[0]
    assert server.connections == 1                       # one kept-alive connection for all four
    assert server.requests[0].startswith(b"GET /prefix/a%20b?k=%C3%A9%26x&m=7 HTTP/1.1\r\nHost: 127.0.0.1:")
    assert server.requests[1].endswith(b"Content-Length: 2\r\n\r\n{}")


async def test_a_kept_connection_the_server_closed_is_replaced(canned: list[CannedServer]) -> None:
    client = await serve(canned, b"HTTP/1.1 200 OK\r\nContent-Length: 1\r\n\r\n1",
                         b"HTTP/1.1 200 OK\r\nContent-Length: 1\r\n\r\n2", close_after=True)
    try:
        assert (await client.request("GET", "/")).body == b"1"
        await asyncio.sleep(0.05)                                # the server's close arrives while idle
        assert (await client.request("POST", "/")).body == b"2"
        assert canned[0].connections == 2
    finally:
        await client.close()


async def test_a_get_is_sent_again_when_the_server_drops_it_unanswered(canned: list[CannedServer]) -> None:
    ok = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"
    client = await serve(canned, ok, b"", ok, b"")
    try:
        await client.request("GET", "/")
        assert (await client.request("GET", "/")).body == b"ok"     # dropped on the kept connection: sent again
        assert canned[0].connections == 2 and len(canned[0].requests) == 3
        with pytest.raises(TransportError, match="may not have been sent"):
            await client.request("POST", "/")                        # a POST may have been applied: never again
    finally:
        await client.close()


@pytest.mark.parametrize("answer, problem", [
    (b"HTTP/1.1 200 OK\r\nContent-Length: 1001\r\n\r\n", "too large"),
    (b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3e9\r\n" + b"x" * 1001, "larger than"),
    (b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n", "chunk size"),
    (b"HTTP/1.1 200 OK\r\n\r\n" + b"x" * 1001, "larger than"),
    (b"SSH-2.0-OpenSSH\r\n", "not an HTTP status line"),
    (b"HTTP/1.1 200 OK\r\nbroken header\r\n\r\n", "malformed header"),
    (b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nshort", "bytes read"),   # cut short
])
async def test_broken_answers_are_transport_errors(canned: list[CannedServer], answer: bytes, problem: str) -> None:
    client = await serve(canned, answer, close_after=True)
    try:
        with pytest.raises(TransportError, match=problem):
            await client.request("POST", "/", body=b"x")
    finally:
        await client.close()


async def test_bad_urls_and_headers() -> None:
    for url in ("ftp://host", "http://", "127.0.0.1:8090"):
        with pytest.raises(ValueError):
            HttpClient(url)
    with pytest.raises(ValueError, match="forbidden"):
        HttpClient("http://h", headers={"Authorization": "Bearer x\r\nX-Evil: 1"})
    client = HttpClient("http://127.0.0.1:1")
    await client.close()
    with pytest.raises(TransportError, match="closed"):
        await client.request("GET", "/")
