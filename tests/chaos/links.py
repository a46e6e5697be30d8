"""One subscribed connection of a test client, TCP or WebSocket (docs/protocol.md): subscribe, read the messages
(``next()``; None once the connection is gone), send heartbeats. Every network step is bounded by
``CALL_DEADLINE``; a refusal or a failed step raises :class:`SessionEnded`.
"""
from __future__ import annotations

import asyncio
import json
from dataclasses import dataclass
from typing import Any

import websockets
from websockets.exceptions import ConnectionClosed, InvalidHandshake

from tests.integration.conftest import sub_command

CALL_DEADLINE = 5.0               # seconds for any one network step of the client (lookup, connect, fetch)


class SessionEnded(Exception):
    """This session is over (why: the message); the subscriber starts another one."""


@dataclass(frozen=True, slots=True)
class Live:
    """A message as a comet wrote it (gid 0: the key's own, gid 1: a public one, a broadcast)."""

    mid: int
    expire: int
    gid: int = 0


class Link:
    """One subscribed connection: ``next()`` gives the next message (None when the connection is gone)."""

    async def next(self) -> Live | None:
        raise NotImplementedError

    async def heartbeat(self) -> None:
        raise NotImplementedError

    async def close(self) -> None:
        raise NotImplementedError


def _live(text: str | bytes) -> Live:
    doc = json.loads(text)
    return Live(int(doc["mid"]), int(doc["msg"]["e"]), int(doc.get("gid", 0)))


class TcpLink(Link):
    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader, self.writer = reader, writer

    @classmethod
    async def open(cls, server: str, key: str, heartbeat: int) -> TcpLink:
        host, port = server.rsplit(":", 1)
        try:
            reader, writer = await asyncio.wait_for(asyncio.open_connection(host, int(port)), CALL_DEADLINE)
        except (OSError, TimeoutError) as exc:
            raise SessionEnded(f"connect: {type(exc).__name__}") from None
        link = cls(reader, writer)
        try:
            writer.write(sub_command(key, heartbeat=heartbeat, version="1.0"))
            reply = await asyncio.wait_for(reader.readline(), CALL_DEADLINE)
        except (OSError, TimeoutError) as exc:
            await link.close()
            raise SessionEnded(f"subscribe: {type(exc).__name__}") from None
        if reply != b"+h\r\n":
            await link.close()
            raise SessionEnded(f"refused {reply.strip().decode(errors='replace') or 'eof'}")
        return link

    async def next(self) -> Live | None:
        while True:
            try:
                head = await self.reader.readline()
                if not head:
                    return None
                if head == b"+h\r\n":
                    continue
                if not head.startswith(b"$"):
                    raise SessionEnded(f"unexpected line {head[:40]!r}")
                body = await self.reader.readexactly(int(head[1:-2]) + 2)
            except (OSError, asyncio.IncompleteReadError):
                return None
            return _live(body[:-2])

    async def heartbeat(self) -> None:
        self.writer.write(b"h")

    async def close(self) -> None:
        self.writer.close()
        try:
            await self.writer.wait_closed()
        except OSError:
            pass


class WsLink(Link):
    def __init__(self, conn: Any) -> None:
        self.conn = conn

    @classmethod
    async def open(cls, server: str, key: str, heartbeat: int) -> WsLink:
        url = f"ws://{server}/sub?key={key}&heartbeat={heartbeat}&ver=1.0"
        try:
            conn = await websockets.connect(url, open_timeout=CALL_DEADLINE, close_timeout=1, ping_interval=None,
                                            max_size=1 << 20)
        except (OSError, TimeoutError, EOFError, InvalidHandshake, ConnectionClosed) as exc:
            raise SessionEnded(f"connect: {type(exc).__name__}") from None
        link = cls(conn)
        try:
            reply = await asyncio.wait_for(conn.recv(), CALL_DEADLINE)
        except (ConnectionClosed, TimeoutError) as exc:
            await link.close()
            raise SessionEnded(f"subscribe: {type(exc).__name__}") from None
        if reply != "+h\r\n":
            await link.close()
            raise SessionEnded(f"refused {str(reply).strip()}")
        return link

    async def next(self) -> Live | None:
        while True:
            try:
                text = await self.conn.recv()
            except ConnectionClosed:
                return None
            if text == "+h\r\n":
                continue
            return _live(text)

    async def heartbeat(self) -> None:
        try:
            await self.conn.send("h")
        except ConnectionClosed:
            pass

    async def close(self) -> None:
        await self.conn.close()
