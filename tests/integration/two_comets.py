"""A stack of two comets as real processes (static mode, one ring of node1 and node2) behind a message node (real
Redis) and a web node, both in the test's loop: what tests/integration/test_broadcast.py and test_tags.py share.

``two_comets(cls, redis_url, tmp_path)`` starts it and yields a ``TwoComets`` (or the test's subclass ``cls``,
which adds its own calls); on the way out it checks that no comet logged a traceback and stops everything.
"""
from __future__ import annotations

import asyncio
import contextlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any, AsyncIterator, TypeVar

import httpx

from message import config as message_config
from message.node import MessageNode
from tests.helpers import free_port
from tests.processes import RoleProcess, tracebacks
from web import config as web_config
from web.node import WebNode

COMETS = ("node1", "node2")

S = TypeVar("S", bound="TwoComets")


@dataclass
class TwoComets:
    """The running stack: the web node and an HTTP client, its public and admin base URLs, the comet processes
    and each comet's TCP address and WebSocket URL."""

    web: WebNode
    http: httpx.AsyncClient
    public: str
    admin: str
    comets: dict[str, RoleProcess]
    tcp: dict[str, tuple[str, int]]
    ws: dict[str, str]

    def comet_of(self, key: str) -> str:
        """The name of the comet the web node routes ``key`` to."""
        assert self.web.view is not None
        node = self.web.view.pick(key)
        assert node is not None
        return node.name


async def listening(port: int, deadline: float = 20.0) -> None:
    """Wait (without blocking the loop) until something accepts connections on 127.0.0.1:port."""
    loop = asyncio.get_running_loop()
    end = loop.time() + deadline
    while True:
        try:
            _, writer = await asyncio.open_connection("127.0.0.1", port)
        except OSError:
            assert loop.time() < end, f"nothing listens on {port}"
            await asyncio.sleep(0.05)
            continue
        writer.close()
        await writer.wait_closed()
        return


@contextlib.asynccontextmanager
async def two_comets(cls: type[S], redis_url: str, tmp_path: Path,
                     web_overrides: dict[str, Any] | None = None) -> AsyncIterator[S]:
    """Start the stack (``web_overrides``: extra sections of the web node's config) and yield a ``cls``."""
    msg_rpc = f"127.0.0.1:{free_port()}"
    message = MessageNode(message_config.load(None, {"rpc": {"bind": msg_rpc},
                                                     "storage": {"backend": "redis", "redis": {"r1": redis_url}}}))
    await message.start()
    comets: dict[str, RoleProcess] = {}
    ports: dict[str, dict[str, int]] = {}
    web: WebNode | None = None
    try:
        for name in COMETS:
            ports[name] = {kind: free_port() for kind in ("tcp", "ws", "rpc")}
            comets[name] = RoleProcess("comet", name, {
                "node": {"name": name},
                "bind": {"tcp": [f"127.0.0.1:{ports[name]['tcp']}"], "ws": [f"127.0.0.1:{ports[name]['ws']}"],
                         "rpc": f"127.0.0.1:{ports[name]['rpc']}", "stat": ""},
                "ring": {"nodes": {comet: 1 for comet in COMETS}},
                "message": {"rpc": msg_rpc}}, tmp_path)
            comets[name].start()
        for name in COMETS:
            for port in ports[name].values():
                await listening(port)
        public, admin = free_port(), free_port()
        web = WebNode(web_config.load(None, {
            "public": {"bind": [f"127.0.0.1:{public}"]}, "admin": {"bind": [f"127.0.0.1:{admin}"]},
            "rpc": {"comet_timeout": 2.0}, "message": {"rpc": msg_rpc}, **(web_overrides or {}),
            "comets": {name: {"rpc": [f"127.0.0.1:{ports[name]['rpc']}"], "tcp": [f"127.0.0.1:{ports[name]['tcp']}"],
                              "ws": [f"127.0.0.1:{ports[name]['ws']}"]} for name in COMETS}}))
        await web.start()
        async with httpx.AsyncClient(timeout=15) as http:
            yield cls(web=web, http=http, public=f"http://127.0.0.1:{public}", admin=f"http://127.0.0.1:{admin}",
                      comets=comets, tcp={name: ("127.0.0.1", ports[name]["tcp"]) for name in COMETS},
                      ws={name: f"ws://127.0.0.1:{ports[name]['ws']}" for name in COMETS})
        assert not tracebacks(list(comets.values())), "a comet logged a traceback"
    finally:
        if web is not None:
            await web.stop()
        for process in comets.values():
            process.close()
        await message.stop()
