"""Two message nodes in ZooKeeper lose one while pushes run: a push either succeeds (stored once, delivered once,
mids increasing per key) or fails fast with ret 65535, and pushes succeed again through the other node. A node
stopped gracefully (SIGTERM) costs no push at all.

Everything is real and a process of its own: ZooKeeper, Redis, two message nodes, a comet and a web node in cluster
mode (comet and web find the message nodes through ``<root>/message``), on loopback; the subscribers are raw TCP
clients of the comet and the pushes and fetches go through the web node's HTTP API.
"""
from __future__ import annotations

import asyncio
import json
import signal
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, AsyncIterator, Awaitable, Callable, Sequence

import httpx
import pytest
from kazoo.exceptions import NoNodeError

from message.client import MessageClient, MessageNodeInfo, MessagePool
from message.cluster import MessageDirectory
from tests.helpers import eventually, free_port, wait_port
from tests.integration.conftest import TcpSubscriber, WebApi, sub_command
from tests.processes import RoleProcess, tracebacks
from thirdparty.rpc_client import RemoteError, RpcUnavailable
from thirdparty.zk import ZkSession

pytestmark = [pytest.mark.zookeeper, pytest.mark.redis, pytest.mark.integration]

SESSION_TIMEOUT = 1.0
ROOT = "/pc"
KEYS = [f"user{n}" for n in range(4)]
BUSY_KEYS = [f"user{n}" for n in range(8)]   # pushes without pause: some reach the node while it stops
DEADLINE = 5.0        # seconds: a push not answered by then counts as a hang (an upper bound, not a timing)
HANG = -1             # the ret recorded for a push that hung
INTERNAL = 65535      # ret: a node or Redis is unreachable (docs/openapi.yaml, web/ret.py)
WATCH_LAG = 0.05      # seconds a caller's view of the message nodes may trail ZooKeeper (a busy loop, a slow link)


@dataclass
class Push:
    """One push of the loop: the body's ``n``, when it was sent and answered, and what came back."""

    n: int
    sent_at: float
    done_at: float
    ret: int
    mid: int | None


@dataclass
class KeyTraffic:
    """Everything one key saw: the pushes made to it and the mids its subscriber received."""

    pushes: list[Push] = field(default_factory=list)
    delivered: list[int] = field(default_factory=list)

    def acked(self, after: float = 0.0) -> list[Push]:
        return [push for push in self.pushes if push.ret == 0 and push.sent_at > after]


class NodesStack:
    """Two message nodes, a comet and a web node, all in cluster mode on one ZooKeeper chroot."""

    def __init__(self, redis_url: str, zk_hosts: str, directory: Path) -> None:
        zookeeper = {"hosts": zk_hosts, "root": ROOT, "session_timeout": SESSION_TIMEOUT}
        self.message_rpc = [f"127.0.0.1:{free_port()}" for _ in range(2)]
        self.messages = [RoleProcess("message", f"message{i}", {
            "rpc": {"bind": address}, "storage": {"redis": {"r1": redis_url}, "max_per_key": 1000},
            "zookeeper": zookeeper}, directory) for i, address in enumerate(self.message_rpc)]
        port = {name: free_port() for name in ("tcp", "ws", "comet_rpc", "public", "admin")}
        self.tcp = ("127.0.0.1", port["tcp"])
        self.comet = RoleProcess("comet", "comet", {
            "node": {"name": "node1"},
            "bind": {"tcp": [f"127.0.0.1:{port['tcp']}"], "ws": [f"127.0.0.1:{port['ws']}"],
                     "rpc": f"127.0.0.1:{port['comet_rpc']}", "stat": ""},
            "zookeeper": zookeeper}, directory)
        self.web = RoleProcess("web", "web", {
            "public": {"bind": [f"127.0.0.1:{port['public']}"]}, "admin": {"bind": [f"127.0.0.1:{port['admin']}"]},
            "rpc": {"comet_timeout": 3.0}, "zookeeper": zookeeper}, directory)
        self.processes = [*self.messages, self.comet, self.web]
        self.ports = [int(address.rsplit(":", 1)[1]) for address in self.message_rpc] + [
            port["tcp"], port["comet_rpc"], port["public"], port["admin"]]
        self.http = httpx.AsyncClient(timeout=2 * DEADLINE)
        self.api = WebApi(f"http://127.0.0.1:{port['public']}", f"http://127.0.0.1:{port['admin']}", self.http)

    async def start(self, zk: ZkSession) -> None:
        for process in self.processes:
            process.start()
        for port in self.ports:
            await asyncio.to_thread(wait_port, "127.0.0.1", port, 20.0)
        await eventually(lambda: registered(zk, len(self.messages)), timeout=20)
        await eventually(self._routed, timeout=20)   # the web routes to the comet
        await eventually(self._serving, timeout=20)  # and the comet knows it is active: it accepts subscribers

    async def _routed(self) -> bool:
        reply = (await self.http.get(f"{self.api.public}/1/server/get", params={"k": KEYS[0], "p": 1})).json()
        return bool(reply["ret"] == 0)

    async def _serving(self) -> bool:
        reader, writer = await asyncio.open_connection(*self.tcp)
        try:
            writer.write(sub_command(KEYS[0]))
            return await asyncio.wait_for(reader.readline(), DEADLINE) == b"+h\r\n"
        finally:
            writer.close()
            await writer.wait_closed()

    async def close(self) -> None:
        await self.http.aclose()
        for process in reversed(self.processes):
            process.close()


async def registered(zk: ZkSession, count: int) -> bool:
    """True when exactly ``count`` message nodes are registered."""
    try:
        return len(await zk.get_children(zk.path("message"))) == count
    except NoNodeError:
        return False


@pytest.fixture
async def zk(zk_sessions: Any) -> ZkSession:
    session: ZkSession = await zk_sessions(session_timeout=SESSION_TIMEOUT, root=ROOT)
    return session


@pytest.fixture
async def stack(redis_url: str, zk_hosts: str, zk: ZkSession, tmp_path: Path) -> AsyncIterator[NodesStack]:
    stack = NodesStack(redis_url, zk_hosts, tmp_path)
    try:
        await stack.start(zk)
        yield stack
    finally:
        await stack.close()


async def push_loop(api: WebApi, key: str, traffic: KeyTraffic, stop: asyncio.Event, pause: float) -> None:
    """Push ``{"key": key, "n": n}`` to ``key`` one after another (``pause`` seconds apart) until ``stop``; record
    every outcome."""
    n = 0
    while not stop.is_set():
        n += 1
        sent_at = time.monotonic()
        try:
            reply = await asyncio.wait_for(api.push(key, {"key": key, "n": n}), DEADLINE)
        except TimeoutError:
            traffic.pushes.append(Push(n, sent_at, time.monotonic(), HANG, None))
            continue
        mid = reply["data"]["mid"] if reply["ret"] == 0 else None
        traffic.pushes.append(Push(n, sent_at, time.monotonic(), reply["ret"], mid))
        await asyncio.sleep(pause)


async def collect(subscriber: TcpSubscriber, into: list[int]) -> None:
    """The mids ``subscriber`` receives, until its connection closes."""
    while True:
        head = await subscriber.reader.readline()
        if not head:
            return
        body = await subscriber.reader.readexactly(int(head[1:-2]) + 2)
        into.append(json.loads(body[:-2])["mid"])


StopVictim = Callable[[RoleProcess], Awaitable[None]]


async def push_through(stack: NodesStack, zk: ZkSession, keys: list[str], stop_victim: StopVictim,
                       pause: float = 0.005) -> dict[str, KeyTraffic]:
    """Push to every key of ``keys`` in a loop; once every key has acknowledged pushes, stop message node 0 with
    ``stop_victim``, and go on until every key has acknowledged pushes sent after its znode was gone."""
    traffic = {key: KeyTraffic() for key in keys}
    subscribers: list[TcpSubscriber] = []
    readers: list[asyncio.Task[None]] = []
    loops: list[asyncio.Task[None]] = []
    stop = asyncio.Event()
    try:
        for key in keys:
            subscribers.append(await TcpSubscriber.connect(stack.tcp, key))
            readers.append(asyncio.create_task(collect(subscribers[-1], traffic[key].delivered)))
        loops = [asyncio.create_task(push_loop(stack.api, key, traffic[key], stop, pause)) for key in keys]
        await eventually(lambda: all(len(t.acked()) >= 5 for t in traffic.values()), timeout=10)
        await stop_victim(stack.messages[0])
        await eventually(lambda: registered(zk, 1), timeout=10)   # deregistered, or its session expired
        gone_at = time.monotonic()
        await eventually(lambda: all(len(t.acked(after=gone_at)) >= 5 for t in traffic.values()), timeout=10)
        stop.set()
        await asyncio.gather(*loops)
        await eventually(lambda: all(len(t.delivered) >= len(t.acked()) for t in traffic.values()), timeout=5)
    finally:
        stop.set()
        await asyncio.gather(*loops, return_exceptions=True)
        for subscriber in subscribers:
            await subscriber.close()
        await asyncio.gather(*readers, return_exceptions=True)
    return traffic


async def check_traffic(api: WebApi, traffic: dict[str, KeyTraffic]) -> int:
    """Assert the contract for every key; return how many pushes failed (all with a clear 65535)."""
    failed = 0
    for key, seen in traffic.items():
        rets = {push.ret for push in seen.pushes}
        assert rets <= {0, INTERNAL}, f"key={key}: rets {rets} (-1 is a push that hung)"
        failed += sum(push.ret == INTERNAL for push in seen.pushes)
        acked = [(push.mid, push.n) for push in seen.acked() if push.mid is not None]
        mids = [mid for mid, _n in acked]
        assert mids == sorted(set(mids)), f"key={key}: acknowledged mids not strictly increasing"
        assert seen.delivered == mids, f"key={key}: delivered {seen.delivered}, acknowledged {mids}"
        stored = [(mid, msg["n"]) for mid, msg in await api.fetch_all(key)]
        stored_mids, stored_ns = [mid for mid, _n in stored], [n for _mid, n in stored]
        assert stored_mids == sorted(set(stored_mids)), f"key={key}: stored mids not strictly increasing"
        assert len(stored_ns) == len(set(stored_ns)), f"key={key}: a push was stored twice: {stored}"
        assert set(acked) <= set(stored), f"key={key}: acknowledged but not stored: {set(acked) - set(stored)}"
        # a push that failed may have been stored (the node died after saving, before answering), never one
        # that was not sent
        assert set(stored_ns) <= {push.n for push in seen.pushes}
    return failed


async def test_a_killed_message_node_fails_only_the_pushes_it_had(stack: NodesStack, zk: ZkSession,
                                                                   record_property: Any) -> None:
    killed_at: list[float] = []

    async def kill(victim: RoleProcess) -> None:
        await asyncio.to_thread(victim.kill)
        killed_at.append(time.monotonic())

    traffic = await push_through(stack, zk, KEYS, kill)
    failed = await check_traffic(stack.api, traffic)
    served_again = min(push.done_at for t in traffic.values() for push in t.acked(after=killed_at[0]))
    record_property("pushes", sum(len(t.pushes) for t in traffic.values()))
    record_property("failed_pushes_in_sigkill_gap", failed)
    record_property("sigkill_to_first_push_served_seconds", round(served_again - killed_at[0], 3))
    assert tracebacks(stack.processes) == {}


class LaggingPool(MessagePool):
    """A MessagePool that follows ZooKeeper WATCH_LAG seconds late, as a caller with a busy event loop does."""

    async def update(self, nodes: Sequence[MessageNodeInfo]) -> None:
        await asyncio.sleep(WATCH_LAG)
        await super().update(nodes)


@dataclass
class Saves:
    """What the save loops of a MessagePool saw: the mids per key, and the errors."""

    mids: dict[str, list[int]] = field(default_factory=dict)
    errors: list[str] = field(default_factory=list)


async def save_loop(pool: MessagePool, key: str, saves: Saves, stop: asyncio.Event) -> None:
    """Save one message after another for ``key`` through ``pool`` until ``stop``."""
    mids = saves.mids.setdefault(key, [])
    while not stop.is_set():
        try:
            mids.append(await asyncio.wait_for(pool.save_private(key, b'{"n":%d}' % len(mids), 600), DEADLINE))
        except (RpcUnavailable, RemoteError, TimeoutError) as exc:
            saves.errors.append(f"key={key}: {type(exc).__name__}: {exc}")


async def test_a_stopped_message_node_fails_no_push(stack: NodesStack, zk: ZkSession, record_property: Any) -> None:
    """SIGTERM: the node deregisters first and answers until its callers have followed, so that neither the comet
    nor any other MessagePool gets an error from it: not the push loops, not a pool whose view trails ZooKeeper by
    WATCH_LAG (saving as fast as it can), not a caller that still calls it WATCH_LAG after its znode is gone."""
    pool = LaggingPool(timeout=3.0)
    directory = MessageDirectory(zk, pool)
    await directory.start(timeout=5)
    late_caller = MessageClient(stack.message_rpc[0], timeout=DEADLINE)
    await late_caller.ping()
    late_errors: list[str] = []

    async def stop_gracefully(victim: RoleProcess) -> None:
        assert victim.proc is not None
        victim.proc.send_signal(signal.SIGTERM)
        await eventually(lambda: registered(zk, 1), timeout=10)   # deregistered
        await asyncio.sleep(WATCH_LAG)
        try:
            await late_caller.save_private("late", b'{"late":true}', 600)
        except (RpcUnavailable, RemoteError) as exc:
            late_errors.append(f"{type(exc).__name__}: {exc}")
        assert await asyncio.to_thread(victim.proc.wait, 15) == 0

    saves, stop = Saves(), asyncio.Event()
    savers = [asyncio.create_task(save_loop(pool, f"direct{n}", saves, stop)) for n in range(16)]
    try:
        traffic = await push_through(stack, zk, BUSY_KEYS, stop_gracefully, pause=0.0)
    finally:
        stop.set()
        await asyncio.gather(*savers)
        await late_caller.close()
        await directory.stop()
        await pool.close()
    failed = await check_traffic(stack.api, traffic)
    record_property("pushes", sum(len(t.pushes) for t in traffic.values()))
    record_property("failed_pushes_on_sigterm", failed)
    record_property("pool_saves", sum(len(mids) for mids in saves.mids.values()))
    record_property("failed_pool_saves_on_sigterm", len(saves.errors))
    assert not late_errors, f"a call {WATCH_LAG}s after the deregistration failed: {late_errors}"
    assert failed == 0 and not saves.errors, (f"{failed} push(es) and {len(saves.errors)} save(s) failed while a "
                                              f"message node stopped gracefully: {saves.errors[:3]}")
    assert all(mids == sorted(set(mids)) for mids in saves.mids.values())
    assert tracebacks(stack.processes) == {}
