"""What the local-cluster supervisor knows about its children: readiness probes, and who is registered in ZooKeeper.

:Status: used by ``thirdparty/local_cluster.py``.

:class:`ClusterState` follows ``<root>/comet`` (two levels) and ``<root>/message`` with a ZooKeeper session of its
own, tells which process a znode belongs to (by the ``rpc`` address its JSON publishes, not by importing the
roles' schemas), which comet of a name is active (the lowest sequence, the roles' own rule), and logs when the
active comet of a name changes. :func:`probe` asks one child whether it serves: ZooKeeper ``srvr``, Redis
``PING``, or every listener accepting a connection.
"""
from __future__ import annotations

import asyncio
import json
import logging
import posixpath
import signal
import socket
from typing import Mapping

from kazoo.exceptions import NoNodeError

from thirdparty.confload import parse_address
from thirdparty.local_cluster_config import RoleProcess, connect_address
from thirdparty.local_cluster_plan import PROBE_REDIS, PROBE_ZOOKEEPER, Child, Plan, summary
from thirdparty.zk import ZkSession, by_sequence

log = logging.getLogger("thirdparty.local_cluster")

PROBE_TIMEOUT = 1.0
CLOSE_TIMEOUT = 5.0


def describe_exit(code: int) -> str:
    """``exited with code 2`` or ``killed by SIGKILL`` for an asyncio/subprocess return code."""
    if code < 0:
        try:
            return f"killed by {signal.Signals(-code).name}"
        except ValueError:
            return f"killed by signal {-code}"
    return f"exited with code {code}"


def busy_binds(plan: Plan) -> list[tuple[str, str]]:
    """(process, address) of every listener of the plan that cannot be bound right now."""
    busy = []
    for child in plan.children:
        for address in child.binds:
            host, port = parse_address(address)
            family = socket.AF_INET6 if ":" in host else socket.AF_INET
            with socket.socket(family, socket.SOCK_STREAM) as sock:
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
                try:
                    sock.bind((host, port))
                except OSError:
                    busy.append((child.name, address))
    return busy


async def _ask(address: str, payload: bytes | None, whole: bool) -> bytes | None:
    """Connect to ``address``, send ``payload``, return the reply (to EOF if ``whole``, else one line)."""
    host, port = connect_address(address)
    try:
        async with asyncio.timeout(PROBE_TIMEOUT):
            reader, writer = await asyncio.open_connection(host, port)
            try:
                if payload is None:
                    return b""
                writer.write(payload)
                return await (reader.read() if whole else reader.readline())
            finally:
                writer.close()
                await writer.wait_closed()
    except (OSError, TimeoutError):
        return None


async def probe(child: Child) -> bool:
    """True when ``child`` serves: ZooKeeper answers ``srvr`` with a mode, Redis ``PING`` with ``+PONG`` (not
    ``-LOADING`` while it replays its AOF), any other process accepts connections on every listener."""
    if child.probe == PROBE_ZOOKEEPER:
        return b"Mode:" in (await _ask(child.binds[0], b"srvr", whole=True) or b"")
    if child.probe == PROBE_REDIS:
        return (await _ask(child.binds[0], b"PING\r\n", whole=False) or b"").startswith(b"+PONG")
    for address in child.binds:
        if await _ask(address, None, whole=False) is None:
            return False
    return True


def published_rpc(data: bytes) -> set[str]:
    """The ``rpc`` address(es) in a comet or message znode's JSON (empty when it has none)."""
    try:
        rpc = json.loads(data).get("rpc", [])
    except (ValueError, AttributeError):
        return set()
    return {rpc} if isinstance(rpc, str) else {item for item in rpc if isinstance(item, str)}


class ClusterState:
    """The registrations of the plan's message and comet processes, followed in ZooKeeper."""

    def __init__(self, plan: Plan) -> None:
        self.plan = plan
        self.stopping = False
        self._session: ZkSession | None = None
        self._comets: dict[str, dict[str, bytes]] = {}
        self._messages: dict[str, bytes] = {}
        self._active: dict[str, str] = {}   # comet name -> process name of its active comet
        self._roles = [child.role for child in plan.children if child.role is not None]

    async def follow(self, timeout: float) -> None:
        """Open the session, remove what a previous run left, watch the comet and message trees."""
        zk = self.plan.zookeeper
        session = self._session = ZkSession(zk.hosts, session_timeout=zk.session_timeout, root=zk.root)
        await session.start(timeout=timeout)
        removed = 0
        for parent in [session.path("message")] + [session.path("comet", name)
                                                    for name in await self._children(session.path("comet"))]:
            for child in await self._children(parent):
                try:
                    await session.delete(posixpath.join(parent, child))
                    removed += 1
                except NoNodeError:
                    pass
        if removed:
            log.warning("zookeeper: removed %d registration(s) left by a run that did not stop cleanly", removed)
        comets = session.watch_tree(session.path("comet"), self._comets_changed)
        messages = session.watch_children(session.path("message"), self._messages_changed)
        await comets.wait_synced(timeout)
        await messages.wait_synced(timeout)

    async def close(self) -> None:
        session, self._session = self._session, None
        if session is not None:
            try:
                async with asyncio.timeout(CLOSE_TIMEOUT):
                    await session.stop()
            except TimeoutError:
                log.warning("zookeeper: the supervisor's session did not close in %g s", CLOSE_TIMEOUT)

    async def _children(self, path: str) -> list[str]:
        assert self._session is not None
        try:
            return await self._session.get_children(path)
        except NoNodeError:
            return []

    def registered(self, child: Child) -> bool:
        """True once ``child`` (if it registers at all) has its znode."""
        role = child.role
        return role is None or not role.registers or self._znode_of(role) is not None

    def _znode_of(self, role: RoleProcess) -> str | None:
        entries = self._messages if role.registers == "message" else self._comets.get(role.comet_name, {})
        mine = set(role.published_rpc)
        return next((znode for znode, data in entries.items() if published_rpc(data) & mine), None)

    def _owner(self, comet_name: str) -> str:
        """The process whose znode is first among the entries of ``comet_name`` ("" if none is)."""
        order = by_sequence(self._comets.get(comet_name, {}))
        for role in self._roles:
            if role.comet_name == comet_name and order and self._znode_of(role) == order[0]:
                return role.name
        return ""

    def comet_states(self) -> dict[str, str]:
        """``{process: "active" | "standby" | "not registered"}`` for every comet process."""
        states = {}
        for role in self._roles:
            if role.comet_name:
                registered = self._znode_of(role) is not None
                active = self._owner(role.comet_name) == role.name
                states[role.name] = "active" if active else "standby" if registered else "not registered"
        return states

    def summary(self, pids: Mapping[str, int]) -> str:
        return summary(self.plan, pids, self.comet_states())

    def _messages_changed(self, children: dict[str, bytes]) -> None:
        self._messages = children

    def _comets_changed(self, tree: dict[str, dict[str, bytes]]) -> None:
        self._comets = tree
        names = {role.comet_name for role in self._roles if role.comet_name}
        for name in sorted(names):
            owner, before = self._owner(name), self._active.get(name, "")
            if owner == before:
                continue
            if owner:
                self._active[name] = owner
            else:
                self._active.pop(name, None)
            if before and not self.stopping:
                log.log(logging.INFO if owner else logging.WARNING, "comet %s: %s", name,
                        f"{owner} is active now (was {before})" if owner else f"no process is active ({before} left)")
