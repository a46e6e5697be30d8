"""Fixtures of the fuzz tests: hypothesis' caches outside the repository, and real nodes.

``live_nodes``: a message node (real Redis) and a comet node in the test's event loop (asyncio's and uvloop),
on free loopback ports, for the socket fuzzers. ``api_cluster``: message, comet and web nodes (admin token set)
running in a thread of their own, because schemathesis sends its requests with a blocking HTTP client from the
test's thread.
"""
from __future__ import annotations

import asyncio
import getpass
import importlib
import logging
import os
import tempfile
import threading
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any, AsyncIterator, Coroutine, Iterator, TypeVar

import pytest
import pytest_asyncio.plugin
import redis
from hypothesis.configuration import set_hypothesis_home_dir

from comet import config as comet_config
from comet.client import CometClient
from comet.node import CometNode
from message import config as message_config
from message.node import MessageNode
from tests.fuzz.budget import API_EXAMPLES, EXAMPLES, LIVE_INPUTS, PROFILE, SEED
from tests.helpers import free_port
from web import config as web_config
from web.node import WebNode

try:
    import uvloop
except ImportError:  # not installed (it is a dependency on Linux only)
    uvloop = None  # type: ignore[assignment]

T = TypeVar("T")
ADMIN_TOKEN = "fuzz-admin-token"
# Loggers of our own code: a client fault must never reach them at ERROR, nor with a traceback.
OUR_LOGGERS = ("comet", "message", "thirdparty", "web")


def pytest_configure(config: pytest.Config) -> None:
    """Hypothesis' storage (its constants and Unicode caches, filled while tests are collected) in the system's
    temporary directory, never ``.hypothesis`` in the repository; no example database is written at all."""
    if not os.environ.get("HYPOTHESIS_STORAGE_DIRECTORY"):
        set_hypothesis_home_dir(Path(tempfile.gettempdir()) / f"pushcluster-hypothesis-{getpass.getuser()}")
    # Hypothesis imports this module (libcst, black) to report a failing example; under filterwarnings=error a
    # DeprecationWarning raised by that import (mypy_extensions.TypedDict) would turn the report into an
    # INTERNALERROR that hides the failure. Imported once here, it warns no more.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        try:
            importlib.import_module("hypothesis.extra._patching")
        except ImportError:  # libcst is an optional dependency of hypothesis
            pass


def pytest_report_header(config: pytest.Config) -> str:
    return (f"pushcluster fuzz: hypothesis profile {PROFILE!r}, {EXAMPLES} examples per property, "
            f"{LIVE_INPUTS} live inputs per listener, {API_EXAMPLES} fuzzed API cases per operation, "
            f"PUSHCLUSTER_FUZZ_SEED={SEED}")


if uvloop is not None and hasattr(pytest_asyncio.plugin, "PytestAsyncioSpecs"):  # the hook exists
    def pytest_asyncio_loop_factories(config, item):
        """The live fuzzers run on asyncio's loop and on uvloop (what the roles use in production): their
        transports differ in how they read, write, close and abort."""
        if item.path.name == "test_live_comet.py":
            return {"asyncio": asyncio.new_event_loop, "uvloop": uvloop.new_event_loop}
        return {"asyncio": asyncio.new_event_loop}


def our_faults(records: list[logging.LogRecord]) -> list[str]:
    """Log lines that would mean our fault: ERROR or above, or any line with a traceback, from our loggers."""
    return [f"{record.levelname} {record.name}: {record.getMessage()}" for record in records
            if record.name.split(".")[0] in OUR_LOGGERS and (record.levelno >= logging.ERROR or record.exc_info)]


@dataclass
class LiveNodes:
    """A comet node and its message node, with an RPC client to the comet."""

    comet: CometNode
    message: MessageNode
    message_rpc: str
    comet_rpc: CometClient

    @property
    def heartbeat_burst(self) -> int:
        """Heartbeats one read may carry before the comet closes the connection (docs/protocol.md, "Limits")."""
        return int(self.comet.config.limits.heartbeat_burst)

    def address(self, listener: str) -> tuple[str, int]:
        if listener == "message-rpc":
            host, port = self.message_rpc.rsplit(":", 1)
        else:
            host, port = self.comet.addresses[listener][0].rsplit(":", 1)
        return host, int(port)


@pytest.fixture
async def live_nodes(redis_url: str) -> AsyncIterator[LiveNodes]:
    message_rpc = f"127.0.0.1:{free_port()}"
    message = MessageNode(message_config.load(None, {
        "rpc": {"bind": message_rpc}, "storage": {"backend": "redis", "redis": {"r1": redis_url}}}))
    comet = CometNode(comet_config.load(None, {
        "bind": {"tcp": ["127.0.0.1:0"], "ws": ["127.0.0.1:0"], "rpc": "127.0.0.1:0", "stat": ""},
        "message": {"rpc": message_rpc}, "limits": {"timer_tick": 0.05}}))
    await message.start()
    await comet.start()
    client = CometClient(comet.addresses["rpc"][0], timeout=5.0)
    try:
        yield LiveNodes(comet, message, message_rpc, client)
    finally:
        await client.close()
        await comet.stop()
        await message.stop()


class LoopThread:
    """An asyncio event loop running in a thread of its own; ``run(coro)`` runs a coroutine there and waits."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._serve, name="fuzz-api-cluster", daemon=True)
        self._thread.start()

    def _serve(self) -> None:
        asyncio.set_event_loop(self.loop)
        self.loop.run_forever()

    def run(self, coro: Coroutine[Any, Any, T], timeout: float = 30.0) -> T:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)

    async def _drain(self) -> None:
        tasks = [task for task in asyncio.all_tasks() if task is not asyncio.current_task()]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        await self.loop.shutdown_asyncgens()

    def close(self) -> None:
        try:
            self.run(self._drain())
        finally:
            self.loop.call_soon_threadsafe(self.loop.stop)
            self._thread.join(10)
            self.loop.close()


@dataclass
class ApiCluster:
    """Base URLs of the web node's two listeners."""

    public: str
    admin: str
    token: str
    comet: CometNode


@pytest.fixture(scope="module")
def api_cluster(redis_server: str) -> Iterator[ApiCluster]:
    """Message (real Redis, flushed first), comet and web nodes in one background loop, for the whole module."""
    client = redis.Redis.from_url(redis_server)
    client.flushall()
    client.close()
    ports = {name: free_port() for name in ("msg", "rpc", "tcp", "ws", "public", "admin")}
    msg_rpc, comet_rpc = f"127.0.0.1:{ports['msg']}", f"127.0.0.1:{ports['rpc']}"
    tcp, ws = f"127.0.0.1:{ports['tcp']}", f"127.0.0.1:{ports['ws']}"
    nodes: list[Any] = []

    async def start() -> None:
        nodes.append(MessageNode(message_config.load(None, {
            "rpc": {"bind": msg_rpc}, "storage": {"backend": "redis", "redis": {"r1": redis_server}}})))
        nodes.append(CometNode(comet_config.load(None, {
            "bind": {"tcp": [tcp], "ws": [ws], "rpc": comet_rpc, "stat": ""}, "message": {"rpc": msg_rpc}})))
        nodes.append(WebNode(web_config.load(None, {
            "public": {"bind": [f"127.0.0.1:{ports['public']}"]},
            "admin": {"bind": [f"127.0.0.1:{ports['admin']}"], "token": ADMIN_TOKEN},
            "comets": {"node1": {"rpc": [comet_rpc], "tcp": [tcp], "ws": [ws]}},
            "message": {"rpc": msg_rpc}})))
        for node in nodes:
            await node.start()

    async def stop() -> None:
        for node in reversed(nodes):
            await node.stop()

    loop = LoopThread()
    try:
        loop.run(start())
        yield ApiCluster(public=f"http://127.0.0.1:{ports['public']}", admin=f"http://127.0.0.1:{ports['admin']}",
                         token=ADMIN_TOKEN, comet=nodes[1])
    finally:
        try:
            loop.run(stop())
        finally:
            loop.close()
