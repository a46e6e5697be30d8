"""Fixtures that run a whole pushcluster in the test's event loop: message (real Redis), comet and web nodes on
free loopback ports, talking real MessagePack-RPC to each other; plus real clients (raw TCP, websockets, httpx).
"""
from __future__ import annotations

import asyncio
import json
from dataclasses import dataclass
from typing import Any, AsyncIterator

import httpx
import pytest
import websockets

from comet import config as comet_config
from comet.node import CometNode
from message import config as message_config
from message.node import MessageNode
from tests.helpers import free_port
from web import config as web_config
from web.node import WebNode

MAX_PER_KEY = 5


@dataclass
class Cluster:
    """Addresses of one in-process cluster and an HTTP client for it."""

    public: str
    admin: str
    tcp: tuple[str, int]
    ws: str
    http: httpx.AsyncClient
    comet: CometNode

    async def push(self, key: str, body: Any, expire: int = 600) -> dict[str, Any]:
        reply = await self.http.post(f"{self.admin}/push/private", params={"key": key, "expire": expire},
                                     content=json.dumps(body))
        assert reply.status_code == 200, reply.text
        result: dict[str, Any] = reply.json()
        return result

    async def fetch(self, key: str, mid: int) -> dict[str, Any]:
        reply = await self.http.get(f"{self.public}/1/msg/get", params={"k": key, "m": mid})
        assert reply.status_code == 200, reply.text
        result: dict[str, Any] = reply.json()
        return result


@pytest.fixture
async def cluster(redis_url: str) -> AsyncIterator[Cluster]:
    ports = {name: free_port() for name in ("msg", "rpc", "tcp", "ws", "public", "admin")}
    msg_rpc, comet_rpc = f"127.0.0.1:{ports['msg']}", f"127.0.0.1:{ports['rpc']}"
    tcp, ws = f"127.0.0.1:{ports['tcp']}", f"127.0.0.1:{ports['ws']}"
    message = MessageNode(message_config.load(None, {
        "rpc": {"bind": msg_rpc},
        "storage": {"backend": "redis", "redis": {"r1": redis_url}, "max_per_key": MAX_PER_KEY}}))
    comet = CometNode(comet_config.load(None, {
        "bind": {"tcp": [tcp], "ws": [ws], "rpc": comet_rpc, "stat": ""},
        "message": {"rpc": msg_rpc}}))
    web = WebNode(web_config.load(None, {
        "public": {"bind": [f"127.0.0.1:{ports['public']}"]},
        "admin": {"bind": [f"127.0.0.1:{ports['admin']}"]},
        "comets": {"node1": {"rpc": [comet_rpc], "tcp": [tcp], "ws": [ws]}},
        "message": {"rpc": msg_rpc}}))
    nodes = [message, comet, web]
    for node in nodes:
        await node.start()
    async with httpx.AsyncClient(timeout=5) as http:
        try:
            yield Cluster(public=f"http://127.0.0.1:{ports['public']}", admin=f"http://127.0.0.1:{ports['admin']}",
                          tcp=("127.0.0.1", ports["tcp"]), ws=f"ws://{ws}", http=http, comet=comet)
        finally:
            for node in reversed(nodes):
                await node.stop()


def sub_command(key: str, heartbeat: int = 30, token: str | None = None, version: str | None = None) -> bytes:
    """The TCP subscribe command of docs/protocol.md."""
    args = ["sub", key, str(heartbeat)]
    if token is not None or version is not None:
        args.append(token or "")
    if version is not None:
        args.append(version)
    out = [f"*{len(args)}\r\n".encode()]
    for arg in args:
        raw = arg.encode()
        out.append(b"$%d\r\n%s\r\n" % (len(raw), raw))
    return b"".join(out)


class TcpSubscriber:
    """A raw-socket TCP client speaking the comet protocol."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader, self.writer = reader, writer

    @classmethod
    async def connect(cls, address: tuple[str, int], key: str, version: str | None = "1.0") -> TcpSubscriber:
        reader, writer = await asyncio.open_connection(*address)
        writer.write(sub_command(key, version=version))
        assert await asyncio.wait_for(reader.readline(), 5) == b"+h\r\n"
        return cls(reader, writer)

    async def frame(self) -> bytes:
        """The next `$len\\r\\n<json>\\r\\n` frame's JSON bytes."""
        head = await asyncio.wait_for(self.reader.readline(), 5)
        assert head.startswith(b"$") and head.endswith(b"\r\n"), head
        body = await asyncio.wait_for(self.reader.readexactly(int(head[1:-2]) + 2), 5)
        assert body.endswith(b"\r\n")
        return body[:-2]

    async def close(self) -> None:
        self.writer.close()
        await self.writer.wait_closed()


async def ws_subscribe(url: str, key: str, version: str | None = "1.0") -> Any:
    query = f"key={key}&heartbeat=30" + (f"&ver={version}" if version else "")
    conn = await websockets.connect(f"{url}/sub?{query}")
    assert await asyncio.wait_for(conn.recv(), 5) == "+h\r\n"
    return conn


@dataclass
class WebApi:
    """A web node's HTTP API seen from a back end and a client: pushes (admin listener) and fetches (public)."""

    public: str
    admin: str
    http: httpx.AsyncClient

    async def push(self, key: str, body: Any, expire: int = 600) -> dict[str, Any]:
        """POST /push/private; the reply envelope (``ret``, and ``data`` with ``mid`` and ``online`` when 0)."""
        reply = await self.http.post(f"{self.admin}/push/private", params={"key": key, "expire": expire},
                                     content=json.dumps(body))
        assert reply.status_code == 200, reply.text
        result: dict[str, Any] = reply.json()
        return result

    async def mprivate(self, keys: list[str], body: Any, expire: int = 600) -> dict[str, Any]:
        """POST /push/mprivate; the reply envelope (``data.fk`` lists the keys that failed)."""
        reply = await self.http.post(f"{self.admin}/push/mprivate", params={"expire": expire},
                                     content=json.dumps({"m": json.dumps(body), "k": ",".join(keys)}))
        assert reply.status_code == 200, reply.text
        result: dict[str, Any] = reply.json()
        return result

    async def fetch(self, key: str, mid: int = 0) -> dict[str, Any]:
        """GET /1/msg/get once; the reply envelope."""
        reply = await self.http.get(f"{self.public}/1/msg/get", params={"k": key, "m": mid})
        assert reply.status_code == 200, reply.text
        result: dict[str, Any] = reply.json()
        return result

    async def fetch_all(self, key: str, mid: int = 0) -> list[tuple[int, Any]]:
        """Every stored ``(mid, message)`` of ``key`` after ``mid``, fetching again from the last mid until an empty
        reply (as a client does); fails the test on a non-zero ret or a trimmed reply."""
        out: list[tuple[int, Any]] = []
        while True:
            reply = await self.fetch(key, mid)
            assert reply["ret"] == 0 and not reply.get("data", {}).get("trimmed"), reply
            batch = [(item["mid"], item["msg"]) for item in reply.get("data", {}).get("msgs", [])]
            if not batch:
                return out
            out.extend(batch)
            mid = batch[-1][0]
