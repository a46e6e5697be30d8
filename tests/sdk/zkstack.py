"""A cluster of real processes with ZooKeeper for the SDK tests: a message node and comets as ``python -m`` processes
(a name's first comet is active, the next its standby), the web node in the test's loop (tests/integration/test_failover.py runs its cluster on ZkCluster too); and probes
of who serves a key.
"""
from __future__ import annotations

import asyncio
import contextlib
from pathlib import Path
from typing import Any

from comet.subscriber_api import ServerError
from comet.subscriber_wire import subscribe_command
from tests.helpers import free_port
from tests.processes import RoleProcess
from web import config as web_config
from web.node import WebNode
from web.push_client import NoNodeError, PushClient

SESSION_TIMEOUT = 1.0
KEY = "alice"


class ZkCluster:
    """ZooKeeper-registered message node and comets (processes, started on demand) and one web node."""

    def __init__(self, redis_url: str, zk_hosts: str, directory: Path) -> None:
        self.zookeeper = {"hosts": zk_hosts, "root": "/pc", "session_timeout": SESSION_TIMEOUT}
        self.redis_url, self.directory = redis_url, directory
        self.processes: list[RoleProcess] = []
        self.web: WebNode | None = None
        self.public = self.admin = ""

    def start_message(self) -> None:
        self._start("message", "message", {"rpc": {"bind": f"127.0.0.1:{free_port()}"},
                                           "storage": {"redis": {"r1": self.redis_url}, "max_per_key": 1000},
                                           "zookeeper": self.zookeeper})

    def start_comet(self, label: str, name: str = "node1") -> tuple[RoleProcess, str]:
        """Start a comet process of ``name`` (the name's first is active, the next its standby): it and its TCP
        address."""
        tcp = f"127.0.0.1:{free_port()}"
        process = self._start("comet", label, {"node": {"name": name},
                                               "bind": {"tcp": [tcp], "ws": [f"127.0.0.1:{free_port()}"],
                                                        "rpc": f"127.0.0.1:{free_port()}", "stat": ""},
                                               "zookeeper": self.zookeeper})
        return process, tcp

    async def start_web(self) -> None:
        public, admin = free_port(), free_port()
        self.web = WebNode(web_config.load(None, {"public": {"bind": [f"127.0.0.1:{public}"]},
                                                  "admin": {"bind": [f"127.0.0.1:{admin}"]},
                                                  "rpc": {"comet_timeout": 1.0}, "zookeeper": self.zookeeper}))
        await self.web.start()
        self.public, self.admin = f"http://127.0.0.1:{public}", f"http://127.0.0.1:{admin}"

    def _start(self, role: str, label: str, config: dict[str, Any]) -> RoleProcess:
        process = RoleProcess(role, label, config, self.directory)
        process.start()
        self.processes.append(process)
        return process

    async def close(self) -> None:
        if self.web is not None:
            await self.web.stop()
        for process in reversed(self.processes):
            process.close()


async def first_reply(address: str, key: str = KEY) -> bytes:
    host, port = address.rsplit(":", 1)
    try:
        reader, writer = await asyncio.open_connection(host, int(port))
    except OSError:
        return b""
    try:
        writer.write(subscribe_command(key, 30))
        return await asyncio.wait_for(reader.readline(), 5)
    except (OSError, TimeoutError):
        return b""
    finally:
        writer.close()
        with contextlib.suppress(OSError):
            await writer.wait_closed()


async def answers(address: str, reply: bytes) -> bool:
    return await first_reply(address) == reply


async def serves(push: PushClient, address: str) -> bool:
    try:
        return await push.server_for(KEY) == address and await answers(address, b"+h\r\n")
    except (NoNodeError, ServerError):
        return False
