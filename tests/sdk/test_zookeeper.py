"""The SDKs against a cluster of real processes with ZooKeeper: the active comet of a name is SIGKILLed while a
PushClient loop pushes; TCP and WebSocket Subscribers move to the standby on their own and end with every
acknowledged message exactly once, in order.

ZooKeeper, Redis, the message node and both comets are real servers / processes (``python -m ...``); the web
node runs in the test's loop (as in tests/integration/test_failover.py).
"""
from __future__ import annotations

import asyncio
import contextlib
import dataclasses
from pathlib import Path
from typing import Any, AsyncIterator

import pytest

from comet.config import CometConfig
from comet.subscriber import Subscriber
from comet.subscriber_api import Message, ServerError
from comet.subscriber_logic import ReconnectPolicy
from comet.subscriber_wire import subscribe_command
from tests.helpers import eventually, free_port
from tests.processes import RoleProcess
from tests.sdk.conftest import collect
from web import config as web_config
from web.node import WebNode
from web.push_client import NoNodeError, PushClient

pytestmark = [pytest.mark.zookeeper, pytest.mark.redis, pytest.mark.integration]

if "zookeeper" not in {f.name for f in dataclasses.fields(CometConfig)}:
    pytest.skip("the comet role has no cluster mode", allow_module_level=True)

SESSION_TIMEOUT = 1.0
KEY = "alice"


class ZkCluster:
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

    def start_comet(self, label: str) -> tuple[RoleProcess, str]:
        tcp = f"127.0.0.1:{free_port()}"
        process = self._start("comet", label, {"node": {"name": "node1"},
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


@pytest.fixture
async def zk_cluster(redis_url: str, zk_hosts: str, tmp_path: Path) -> AsyncIterator[ZkCluster]:
    cluster = ZkCluster(redis_url, zk_hosts, tmp_path)
    try:
        yield cluster
    finally:
        await cluster.close()


async def first_reply(address: str) -> bytes:
    host, port = address.rsplit(":", 1)
    try:
        reader, writer = await asyncio.open_connection(host, int(port))
    except OSError:
        return b""
    try:
        writer.write(subscribe_command(KEY, 30))
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


async def test_subscribers_follow_a_sigkilled_comet_to_its_standby(zk_cluster: ZkCluster) -> None:
    zk_cluster.start_message()
    active, active_tcp = zk_cluster.start_comet("comet-a")
    await zk_cluster.start_web()
    push = PushClient(zk_cluster.admin, public_url=zk_cluster.public, timeout=5)
    subscribers: list[Subscriber] = []
    try:
        await eventually(lambda: serves(push, active_tcp), timeout=30)
        _standby, standby_tcp = zk_cluster.start_comet("comet-b")
        await eventually(lambda: answers(standby_tcp, b"-n\r\n"), timeout=30)   # up, behind the active one

        policy = ReconnectPolicy(initial=0.05, maximum=0.3)
        subscribers = [Subscriber(zk_cluster.public, KEY, proto=proto, reconnect=policy) for proto in ("tcp", "ws")]
        received: list[list[Message]] = [[], []]
        readers = [asyncio.create_task(collect(sub, got)) for sub, got in zip(subscribers, received)]
        for subscriber in subscribers:
            await asyncio.wait_for(subscriber.wait_live(), 10)

        acknowledged: list[int] = []
        failures: list[str] = []
        stop = asyncio.Event()

        async def push_loop() -> None:
            n = 0
            while not stop.is_set():
                n += 1
                try:
                    acknowledged.append((await push.push_private(KEY, {"n": n}, expire=600)).mid)
                except (ServerError, NoNodeError) as exc:     # the failover gap: a clear error, never a hang
                    failures.append(type(exc).__name__)
                await asyncio.sleep(0.01)

        loop = asyncio.create_task(push_loop())
        await eventually(lambda: len(acknowledged) >= 20, timeout=10)
        await asyncio.to_thread(active.kill)
        killed_at = len(acknowledged)
        await eventually(lambda: len(acknowledged) >= killed_at + 20, timeout=30)
        stop.set()
        await loop

        for subscriber, got in zip(subscribers, received):
            try:
                await eventually(lambda: len(got) >= len(acknowledged), timeout=15)
            except AssertionError:
                raise AssertionError(f"{subscriber.proto}: {len(got)} of {len(acknowledged)} delivered, state "
                                     f"{subscriber.state}, {subscriber.stats}") from None
        await asyncio.sleep(0.2)                               # nothing else may arrive
        for subscriber, got in zip(subscribers, received):
            assert [m.mid for m in got] == acknowledged, f"{subscriber.proto}: lost, duplicated or reordered"
            assert subscriber.stats.sessions >= 2 and subscriber.last_mid == acknowledged[-1]
        assert await push.server_for(KEY) == standby_tcp
        assert set(failures) <= {"ServerError", "NoNodeError"}
        for subscriber, reader in zip(subscribers, readers):
            await subscriber.close()
            await asyncio.wait_for(reader, 5)
    finally:
        for subscriber in subscribers:
            await subscriber.close()
        await push.close()
