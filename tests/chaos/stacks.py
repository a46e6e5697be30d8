"""Single-comet pushclusters in static mode (no ZooKeeper) for the fault and soak tests.

:class:`ProcessStack`: the message node and the comet as ``python -m <role>`` processes (so that a test can read
their file descriptors and memory in /proc, or signal them), the web node in the test's event loop.
:class:`InProcessStack`: all three nodes in the test's event loop (fast to start; a test can count its tasks).
Both expose the same addresses and the bounded HTTP calls of :class:`tests.chaos.cluster.ChaosCluster`.
"""
from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import httpx

from comet import config as comet_config
from comet.client import CometClient
from comet.node import CometNode
from message import config as message_config
from message.node import MessageNode
from tests.chaos.cluster import ChaosCluster
from tests.helpers import free_port, wait_port
from tests.processes import RoleProcess
from web import config as web_config
from web.node import WebNode

MESSAGE_TIMEOUT = 2.0   # seconds per call from comet and web to the message node


class _Addresses:
    def __init__(self) -> None:
        port = {name: free_port() for name in ("msg", "rpc", "tcp", "ws", "stat", "public", "admin")}
        self.message_rpc = f"127.0.0.1:{port['msg']}"
        self.comet_rpc, self.tcp, self.ws, self.stat_address = (f"127.0.0.1:{port[n]}" for n in ("rpc", "tcp", "ws", "stat"))
        self.public_port, self.admin_port = port["public"], port["admin"]
        self.ports = [port["msg"], port["rpc"], port["tcp"], port["ws"], port["stat"]]

    http: httpx.AsyncClient
    _comet_client: CometClient | None = None

    def comet_client(self) -> CometClient:
        """A CometRPC client of the comet (made on first use, closed by ``close_comet_client``)."""
        if self._comet_client is None:
            self._comet_client = CometClient(self.comet_rpc, timeout=5.0)
        return self._comet_client

    async def close_comet_client(self) -> None:
        if self._comet_client is not None:
            await self._comet_client.close()
            self._comet_client = None

    async def comet_stat(self) -> dict[str, Any]:
        """The comet's ``GET /stat`` counters."""
        reply = await asyncio.wait_for(self.http.get(f"http://{self.stat_address}/stat"), 5)
        doc: dict[str, Any] = reply.json()
        return doc

    def message_config(self, redis_url: str) -> dict[str, Any]:
        return {"rpc": {"bind": self.message_rpc},
                "storage": {"redis": {"r1": redis_url}, "max_per_key": 100_000, "redis_timeout": 1.0}}

    def comet_config(self, limits: dict[str, Any]) -> dict[str, Any]:
        return {"bind": {"tcp": [self.tcp], "ws": [self.ws], "rpc": self.comet_rpc, "stat": self.stat_address},
                "message": {"rpc": self.message_rpc, "timeout": MESSAGE_TIMEOUT}, "limits": limits}

    def web_config(self, limits: dict[str, Any]) -> dict[str, Any]:
        return {"public": {"bind": [f"127.0.0.1:{self.public_port}"]},
                "admin": {"bind": [f"127.0.0.1:{self.admin_port}"]},
                "comets": {"node1": {"rpc": [self.comet_rpc], "tcp": [self.tcp], "ws": [self.ws]}},
                "rpc": {"comet_timeout": 3.0}, "message": {"rpc": self.message_rpc, "timeout": MESSAGE_TIMEOUT},
                "limits": limits}


class ProcessStack(ChaosCluster, _Addresses):
    """Message and comet processes in static mode and an in-process web node."""

    def __init__(self, redis_url: str, directory: Path, *, comet_limits: dict[str, Any] | None = None,
                 web_limits: dict[str, Any] | None = None) -> None:
        ChaosCluster.__init__(self, None, "", directory)
        _Addresses.__init__(self)
        self.web_limits = web_limits or {}
        self.message = RoleProcess("message", "message", self.message_config(redis_url), directory)
        self.comet = RoleProcess("comet", "comet", self.comet_config(comet_limits or {}), directory)

    async def start(self) -> None:
        for process in (self.message, self.comet):
            process.start()
        for port in self.ports:
            await asyncio.to_thread(wait_port, "127.0.0.1", port, 30.0)
        self.web = WebNode(web_config.load(None, self.web_config(self.web_limits)))
        await self.web.start()
        self.public, self.admin = f"http://127.0.0.1:{self.public_port}", f"http://127.0.0.1:{self.admin_port}"

    def processes(self) -> list[RoleProcess]:
        return [self.message, self.comet]

    async def close(self) -> None:
        await self.close_comet_client()
        await super().close()


class InProcessStack(ChaosCluster, _Addresses):
    """Message, comet and web nodes in the test's event loop."""

    def __init__(self, redis_url: str, *, comet_limits: dict[str, Any] | None = None,
                 web_limits: dict[str, Any] | None = None) -> None:
        ChaosCluster.__init__(self, None, "", Path("."))
        _Addresses.__init__(self)
        self.message_node = MessageNode(message_config.load(None, self.message_config(redis_url)))
        self.comet_node = CometNode(comet_config.load(None, self.comet_config(comet_limits or {})))
        self.web_limits = web_limits or {}

    async def start(self) -> None:
        await self.message_node.start()
        await self.comet_node.start()
        self.web = WebNode(web_config.load(None, self.web_config(self.web_limits)))
        await self.web.start()
        self.public, self.admin = f"http://127.0.0.1:{self.public_port}", f"http://127.0.0.1:{self.admin_port}"

    def processes(self) -> list[RoleProcess]:
        return []

    async def close(self) -> None:
        await self.close_comet_client()
        await super().close()
        await self.comet_node.stop()
        await self.message_node.stop()
