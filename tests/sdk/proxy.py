"""A TCP proxy on loopback for the SDK tests: real sockets, with two switches a network can flip.

* :meth:`TcpProxy.freeze` — the connections open now stop passing bytes either way without closing (a half-open
  connection: a peer that vanished, a NAT that forgot the flow); new connections pass normally.
* :meth:`TcpProxy.hold` — client bytes that start with a given prefix (an HTTP request line such as
  ``GET /1/msg/get``) wait until :meth:`TcpProxy.release`; the rest passes. Each request of the SDK's HTTP client
  is one write, so on loopback it arrives as one chunk.
"""
from __future__ import annotations

import asyncio
import contextlib


class TcpProxy:
    def __init__(self, target: tuple[str, int]) -> None:
        self.target = target
        self.port = 0
        self.connections = 0
        self._server: asyncio.Server | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self._writers: set[asyncio.StreamWriter] = set()
        self._frozen: set[int] = set()
        self._hold_prefix: bytes | None = None
        self._released = asyncio.Event()
        self.held = asyncio.Event()   # set when a chunk is being held

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    async def start(self) -> TcpProxy:
        self._server = await asyncio.start_server(self._accept, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    def freeze(self) -> None:
        self._frozen.update(id(writer) for writer in self._writers)

    def hold(self, prefix: bytes) -> None:
        self._hold_prefix = prefix
        self._released.clear()
        self.held.clear()

    def release(self) -> None:
        self._hold_prefix = None
        self._released.set()

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        try:
            up_reader, up_writer = await asyncio.open_connection(*self.target)
        except OSError:
            writer.close()
            return
        self._writers.update((writer, up_writer))
        tag = id(writer)
        for task in (asyncio.create_task(self._pipe(reader, up_writer, tag, up=True)),
                     asyncio.create_task(self._pipe(up_reader, writer, tag, up=False))):
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    async def _pipe(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, tag: int, up: bool) -> None:
        try:
            while data := await reader.read(65536):
                if tag in self._frozen:
                    continue   # swallowed: the other side never hears of it
                if up and self._hold_prefix is not None and data.startswith(self._hold_prefix):
                    self.held.set()
                    await self._released.wait()
                writer.write(data)
                await writer.drain()
        except OSError:
            pass
        finally:
            if tag not in self._frozen:
                writer.close()

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()
        self._released.set()
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        for writer in list(self._writers):
            writer.close()
            with contextlib.suppress(OSError):
                await writer.wait_closed()
        if self._server is not None:
            await self._server.wait_closed()
