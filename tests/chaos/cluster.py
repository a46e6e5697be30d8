"""A whole pushcluster on loopback for the fault tests: real ZooKeeper, a real redis-server persisting every write
to its AOF, message and comet nodes as ``python -m <role>`` processes that a test kills and restarts, and a web
node in the test's event loop (as tests/integration/test_failover.py does).

Every call to the web node is bounded by ``DEADLINE``: a call that has not answered by then is recorded as a
hang (``HANG``), never waited for longer.
"""
from __future__ import annotations

import asyncio
import json
import signal
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import redis.asyncio
import redis.exceptions

from tests.conftest import RedisServer
from tests.helpers import free_port, wait_port
from tests.processes import RoleProcess, exit_code, send_signal
from thirdparty.ring import Ring
from web import config as web_config
from web.node import WebNode

SESSION_TIMEOUT = 1.5     # ZooKeeper session of every node: a killed comet is replaced after about this long
ROOT = "/pc"
DEADLINE = 8.0            # seconds: an HTTP call not answered by then is a hang (a bound, not a timing)
HANG, BROKEN = -1, -2     # recorded rets: no answer within DEADLINE / no JSON envelope (connection error)
PERSISTENT = ("--appendonly", "yes", "--appendfsync", "always")
STOP_WAIT = 20.0          # seconds a SIGTERMed process has to exit
MAX_PUBLIC = 100_000      # public messages a message node keeps: none of a run's broadcasts is trimmed


@dataclass
class Comet:
    """One comet process and its addresses."""

    label: str
    name: str
    process: RoleProcess
    tcp: str
    ws: str
    stat: str


@dataclass
class Message:
    label: str
    process: RoleProcess
    port: int


def keys_for(names: list[str], per_name: int, prefix: str = "user") -> dict[str, list[str]]:
    """``per_name`` keys for each comet name, as the ring (the same one web nodes use) places them."""
    ring = Ring({name: 1 for name in names})
    found: dict[str, list[str]] = {name: [] for name in names}
    for n in range(10_000):
        key = f"{prefix}{n}"
        bucket = found[str(ring.get(key))]
        if len(bucket) < per_name:
            bucket.append(key)
        if all(len(bucket) == per_name for bucket in found.values()):
            return found
    raise AssertionError(f"the ring left a name without keys: {found}")


async def redis_ready(url: str) -> bool:
    """True once the Redis at ``url`` answers commands (not refusing, not loading its AOF)."""
    client = redis.asyncio.Redis.from_url(url, socket_timeout=1.0, socket_connect_timeout=1.0)
    try:
        return bool(await client.ping())
    except (redis.exceptions.RedisError, OSError):
        return False
    finally:
        await client.aclose()


async def wait_until(check: Any, timeout: float, what: str) -> float:
    """Poll ``check()`` (sync or async) every 50 ms until true; the seconds it took. AssertionError naming
    ``what`` after ``timeout``."""
    started = time.monotonic()
    while True:
        result = check()
        if not isinstance(result, bool):
            result = await result
        if result:
            return time.monotonic() - started
        if time.monotonic() - started > timeout:
            raise AssertionError(f"{what}: not within {timeout}s")
        await asyncio.sleep(0.05)


class ChaosCluster:
    """The processes of one test's cluster, the in-process web node, and a bounded HTTP client for it."""

    def __init__(self, redis_server: RedisServer | None, zk_hosts: str, directory: Path) -> None:
        self._redis = redis_server
        self.zookeeper = {"hosts": zk_hosts, "root": ROOT, "session_timeout": SESSION_TIMEOUT}
        self.directory = directory
        self.messages: dict[str, Message] = {}
        self.comets: dict[str, Comet] = {}
        self.web: WebNode | None = None
        self.public = self.admin = ""
        self.http = self._http_client()
        self.term_exits: list[tuple[str, int | None]] = []   # (process, exit code) of every SIGTERM

    @staticmethod
    def _http_client() -> httpx.AsyncClient:
        return httpx.AsyncClient(timeout=DEADLINE, limits=httpx.Limits(max_connections=200))

    async def reset_http(self) -> None:
        """Close the HTTP client's pooled connections (and so the servers' side of them); a fresh client."""
        await self.http.aclose()
        self.http = self._http_client()

    @property
    def redis(self) -> RedisServer:
        assert self._redis is not None, "this cluster was made without its own redis-server"
        return self._redis

    # -- starting -------------------------------------------------------------------------------------------

    def add_message(self, label: str) -> Message:
        port = free_port()
        process = RoleProcess("message", label, {
            "rpc": {"bind": f"127.0.0.1:{port}"},
            "storage": {"redis": {"r1": self.redis.url}, "max_per_key": 100_000, "max_public": MAX_PUBLIC,
                        "redis_timeout": 1.0},
            "zookeeper": self.zookeeper}, self.directory)
        process.start()
        self.messages[label] = message = Message(label, process, port)
        return message

    def add_comet(self, label: str, name: str, limits: dict[str, Any] | None = None) -> Comet:
        tcp, ws, rpc, stat = (f"127.0.0.1:{free_port()}" for _ in range(4))
        process = RoleProcess("comet", label, {
            "node": {"name": name},
            "bind": {"tcp": [tcp], "ws": [ws], "rpc": rpc, "stat": stat},
            "message": {"timeout": 2.0},
            "limits": limits or {},
            "zookeeper": self.zookeeper}, self.directory)
        process.start()
        self.comets[label] = comet = Comet(label, name, process, tcp, ws, stat)
        return comet

    async def start_web(self) -> None:
        public, admin = free_port(), free_port()
        self.web = WebNode(web_config.load(None, {
            "public": {"bind": [f"127.0.0.1:{public}"]}, "admin": {"bind": [f"127.0.0.1:{admin}"]},
            "rpc": {"comet_timeout": 3.0}, "message": {"timeout": 2.0}, "zookeeper": self.zookeeper}))
        await self.web.start()
        self.public, self.admin = f"http://127.0.0.1:{public}", f"http://127.0.0.1:{admin}"

    # -- looking -------------------------------------------------------------------------------------------

    async def role(self, comet: Comet) -> str:
        """The comet's cluster role from its /stat ("active", "standby", ...), or "down"."""
        try:
            reply = await asyncio.wait_for(self.http.get(f"http://{comet.stat}/stat"), 2.0)
            return str(reply.json()["cluster"]["role"])
        except (httpx.HTTPError, TimeoutError, ValueError, KeyError):
            return "down"

    async def stat(self, comet: Comet) -> dict[str, Any]:
        reply = await asyncio.wait_for(self.http.get(f"http://{comet.stat}/stat"), 2.0)
        doc: dict[str, Any] = reply.json()
        return doc

    async def comet_with_role(self, name: str, wanted: str) -> Comet | None:
        for comet in self.comets.values():
            if comet.name == name and await self.role(comet) == wanted:
                return comet
        return None

    async def server(self, key: str, proto: int = 2) -> Any:
        """The address /1/server/get names for ``key`` (or its non-zero ret)."""
        reply = await self.get("/1/server/get", {"k": key, "p": proto})
        return reply["data"]["server"] if reply.get("ret") == 0 else reply.get("ret")

    # -- calling the web node (bounded) --------------------------------------------------------------------

    async def push(self, key: str, body: Any, expire: int) -> tuple[int, int | None]:
        """POST /push/private: (ret, mid); ret HANG when not answered within DEADLINE, BROKEN without an envelope."""
        try:
            reply = await asyncio.wait_for(self.http.post(
                f"{self.admin}/push/private", params={"key": key, "expire": expire}, content=json.dumps(body)),
                DEADLINE)
            doc = reply.json()
        except TimeoutError:
            return HANG, None
        except (httpx.HTTPError, ValueError):
            return BROKEN, None
        ret = int(doc.get("ret", BROKEN))
        return ret, (int(doc["data"]["mid"]) if ret == 0 else None)

    async def get(self, path: str, params: dict[str, Any]) -> dict[str, Any]:
        reply = await asyncio.wait_for(self.http.get(f"{self.public}{path}", params=params), DEADLINE)
        doc: dict[str, Any] = reply.json()
        return doc

    async def stored(self, key: str) -> list[tuple[int, Any]]:
        """Every stored (mid, message) of ``key``, paging as a client does; AssertionError on a non-zero ret."""
        out: list[tuple[int, Any]] = []
        after = 0
        while True:
            reply = await self.get("/1/msg/get", {"k": key, "m": after})
            assert reply.get("ret") == 0, f"fetch of {key} after {after}: {reply}"
            batch = [(int(item["mid"]), item["msg"]) for item in (reply.get("data") or {}).get("msgs", [])]
            if not batch:
                return out
            out.extend(batch)
            after = batch[-1][0]

    # -- faults --------------------------------------------------------------------------------------------

    async def stop_process(self, process: RoleProcess, how: str) -> None:
        """SIGKILL (``how`` = "KILL") or SIGTERM and wait for the exit (recorded in ``term_exits``)."""
        if how == "KILL":
            await asyncio.to_thread(process.kill)
            return
        send_signal(process, signal.SIGTERM)
        code = await asyncio.to_thread(exit_code, process, STOP_WAIT)
        self.term_exits.append((process.name, code))
        if code is None:
            await asyncio.to_thread(process.close)

    async def restart_comet(self, comet: Comet) -> float:
        """Start the comet's process again (same config and ports); seconds until it registered."""
        comet.process.start()
        return await wait_until(lambda: self._registered(comet), 30.0, f"{comet.label} registered again")

    async def _registered(self, comet: Comet) -> bool:
        return await self.role(comet) in ("active", "standby")

    async def restart_message(self, message: Message) -> float:
        message.process.start()
        started = time.monotonic()
        await asyncio.to_thread(wait_port, "127.0.0.1", message.port, 30.0)
        return time.monotonic() - started

    async def stop_redis(self, how: str) -> None:
        proc = self.redis.proc
        if proc is None:
            return
        if how == "KILL":
            await asyncio.to_thread(self.redis.kill)
            return
        proc.terminate()
        await asyncio.to_thread(proc.wait, STOP_WAIT)
        self.redis.proc = None

    async def restart_redis(self) -> float:
        await asyncio.to_thread(self.redis.start)
        return await wait_until(lambda: redis_ready(self.redis.url), 30.0, "redis ready after restart")

    # -- the end -------------------------------------------------------------------------------------------

    def processes(self) -> list[RoleProcess]:
        return [m.process for m in self.messages.values()] + [c.process for c in self.comets.values()]

    async def close(self) -> None:
        await self.http.aclose()
        if self.web is not None:
            await self.web.stop()
            self.web = None
        for process in reversed(self.processes()):
            await asyncio.to_thread(process.close)


async def start_cluster(cluster: ChaosCluster, names: dict[str, int], keys: list[str], messages: int = 2) -> None:
    """``messages`` message nodes, for each comet name ``names[name]`` comets (the first is the active one,
    registered before the others), the web node; returns once every key is served and pushable."""
    for n in range(1, messages + 1):
        cluster.add_message(f"message-{n}")
    firsts = [cluster.add_comet(f"comet-{name}1", name) for name in names]
    for comet in firsts:
        await wait_until(lambda comet=comet: _role_is(cluster, comet, "active"), 30.0, f"{comet.label} active")
    for name, count in names.items():
        for n in range(2, count + 1):
            standby = cluster.add_comet(f"comet-{name}{n}", name)
            await wait_until(lambda s=standby: _role_is(cluster, s, "standby"), 30.0, f"{standby.label} standby")
    for message in cluster.messages.values():
        await asyncio.to_thread(wait_port, "127.0.0.1", message.port, 30.0)
    await cluster.start_web()
    for key in keys:
        await wait_until(lambda key=key: _pushable(cluster, key), 30.0, f"key {key} pushable")


async def _role_is(cluster: ChaosCluster, comet: Comet, role: str) -> bool:
    return await cluster.role(comet) == role


async def _pushable(cluster: ChaosCluster, key: str) -> bool:
    ret, _mid = await cluster.push(key, {"k": key, "n": -1, "e": 0}, 0)
    return ret == 0
