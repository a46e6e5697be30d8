"""Cluster mode end to end on real ZooKeeper and Redis: two comet names, a standby, a message node and a web node
in this process, talking over real sockets.

CometNode does not join ZooKeeper by itself yet: the test registers each comet with CometMembership and connects
the membership to the node the way the node will (``join_cluster`` below: the ring it serves is the cluster's
ring while it is active and empty while it is a standby, so a standby answers ``-n``; fencing closes every
client connection).
"""
from __future__ import annotations

import asyncio
import json
from dataclasses import dataclass, field
from typing import Any

import httpx
import pytest

from comet import config as comet_config
from comet.cluster import CometMembership
from comet.node import CometNode
from message import config as message_config
from message.node import MessageNode
from tests.helpers import eventually, free_port
from tests.integration.conftest import TcpSubscriber, sub_command
from tests.zookeeper import expire_session
from thirdparty.ring import Ring
from thirdparty.zk import ZkSession
from web import config as web_config
from web.node import WebNode

pytestmark = [pytest.mark.zookeeper, pytest.mark.redis, pytest.mark.integration]

ROOT = "/pc"
SESSION_TIMEOUT = 1.0


@dataclass
class Comet:
    node: CometNode
    session: ZkSession
    membership: CometMembership
    fenced: list[str] = field(default_factory=list)

    @property
    def tcp(self) -> tuple[str, int]:
        host, port = self.node.addresses["tcp"][0].rsplit(":", 1)
        return host, int(port)


def join_cluster(node: CometNode, session: ZkSession, fenced: list[str]) -> CometMembership:
    """A membership for ``node`` whose callbacks drive the node's ring and close its clients when fenced."""
    state: dict[str, Any] = {"active": False, "ring": {}}

    def serve() -> None:
        node.service.ring = Ring(state["ring"] if state["active"] else {})

    def on_active(active: bool) -> None:
        state["active"] = active
        serve()

    def on_ring(ring: dict[str, int]) -> None:
        state["ring"] = ring
        serve()

    def on_fenced(reason: str) -> None:
        fenced.append(reason)
        node.table.close_all("fenced")

    return CometMembership(session, node.info(), on_active=on_active, on_ring=on_ring, on_fenced=on_fenced)


@dataclass
class ZkCluster:
    zk_hosts: str
    msg_rpc: str
    http: httpx.AsyncClient
    public: str
    admin: str
    web: WebNode
    comets: list[Comet] = field(default_factory=list)

    async def add_comet(self, name: str) -> Comet:
        node = CometNode(comet_config.load(None, {
            "node": {"name": name},
            "bind": {"tcp": ["127.0.0.1:0"], "ws": ["127.0.0.1:0"], "rpc": "127.0.0.1:0", "stat": ""},
            "message": {"rpc": self.msg_rpc}}))
        await node.start()
        node.service.ring = Ring({})   # serves nothing until its membership says so
        session = ZkSession(self.zk_hosts, session_timeout=SESSION_TIMEOUT, root=ROOT)
        await session.start(timeout=5)
        fenced: list[str] = []
        membership = join_cluster(node, session, fenced)
        comet = Comet(node, session, membership, fenced)
        self.comets.append(comet)
        await membership.start(timeout=5)
        return comet

    async def server(self, key: str, proto: int = 2) -> Any:
        reply = (await self.http.get(f"{self.public}/1/server/get", params={"k": key, "p": proto})).json()
        return reply["data"]["server"] if reply["ret"] == 0 else reply["ret"]

    async def push(self, key: str, body: Any) -> dict[str, Any]:
        reply = await self.http.post(f"{self.admin}/push/private", params={"key": key, "expire": 600},
                                     content=json.dumps(body))
        result: dict[str, Any] = reply.json()
        return result

    def comet_at(self, address: str) -> Comet:
        [comet] = [comet for comet in self.comets if address in comet.node.addresses["tcp"]]
        return comet


@pytest.fixture
async def zk_cluster(redis_url, zk_hosts):
    msg_rpc = f"127.0.0.1:{free_port()}"
    zookeeper = {"hosts": zk_hosts, "root": ROOT, "session_timeout": SESSION_TIMEOUT}
    message = MessageNode(message_config.load(None, {"rpc": {"bind": msg_rpc}, "zookeeper": zookeeper,
                                                     "storage": {"redis": {"r1": redis_url}}}))
    await message.start()
    public, admin = free_port(), free_port()
    web = WebNode(web_config.load(None, {"public": {"bind": [f"127.0.0.1:{public}"]},
                                         "admin": {"bind": [f"127.0.0.1:{admin}"]}, "zookeeper": zookeeper}))
    await web.start()
    async with httpx.AsyncClient(timeout=5) as http:
        cluster = ZkCluster(zk_hosts, msg_rpc, http, f"http://127.0.0.1:{public}", f"http://127.0.0.1:{admin}", web)
        try:
            yield cluster
        finally:
            for comet in cluster.comets:
                await comet.membership.stop()
                await comet.session.stop()
                await comet.node.stop()
            await web.stop()
            await message.stop()


async def refused(address: tuple[str, int], key: str) -> bytes:
    reader, writer = await asyncio.open_connection(*address)
    try:
        writer.write(sub_command(key, version="1.0"))
        return await asyncio.wait_for(reader.readline(), 5)
    finally:
        writer.close()
        await writer.wait_closed()


async def test_keys_spread_over_two_names_and_reach_the_owning_comet(zk_cluster: ZkCluster) -> None:
    one, two = await zk_cluster.add_comet("node1"), await zk_cluster.add_comet("node2")
    await eventually(lambda: set(zk_cluster.web.view.nodes) == {"node1", "node2"})
    await eventually(lambda: one.membership.ring == two.membership.ring == {"node1": 1, "node2": 1})
    ring = Ring({"node1": 1, "node2": 1})
    owners = {f"user{i}": ring.get(f"user{i}") for i in range(30)}
    assert set(owners.values()) == {"node1", "node2"}
    for key, owner in owners.items():
        address = await zk_cluster.server(key)
        assert zk_cluster.comet_at(address).node.config.node.name == owner
    for comet, other in ((one, two), (two, one)):
        key = next(key for key, owner in owners.items() if owner == comet.node.config.node.name)
        subscriber = await TcpSubscriber.connect(comet.tcp, key)
        try:
            reply = await zk_cluster.push(key, {"hello": key})
            assert reply["ret"] == 0 and reply["data"]["online"] == 1
            frame = json.loads(await subscriber.frame())
            assert frame["msg"] == {"hello": key} and frame["mid"] == reply["data"]["mid"]
        finally:
            await subscriber.close()
        assert await refused(other.tcp, key) == b"-n\r\n"   # the wrong comet refuses the key


async def test_the_standby_takes_over_when_the_active_session_expires(zk_cluster: ZkCluster, zk_server) -> None:
    active = await zk_cluster.add_comet("node1")
    standby = await zk_cluster.add_comet("node1")
    assert active.membership.active and not standby.membership.active
    await eventually(lambda: zk_cluster.web.view.nodes.get("node1") is not None)
    assert await zk_cluster.server("alice") == "%s:%d" % active.tcp
    assert await refused(standby.tcp, "alice") == b"-n\r\n"       # a standby serves no key
    subscriber = await TcpSubscriber.connect(active.tcp, "alice")
    first = await zk_cluster.push("alice", {"n": 1})
    assert json.loads(await subscriber.frame())["mid"] == first["data"]["mid"]

    await asyncio.to_thread(expire_session, zk_cluster.zk_hosts.partition("/")[0], active.session.client_id)
    await eventually(lambda: active.fenced == ["session lost"])
    assert await asyncio.wait_for(subscriber.reader.read(), 5) == b""   # fenced: its clients are closed
    await eventually(lambda: standby.membership.active)
    address = "%s:%d" % standby.tcp
    await eventually(lambda: _server_is(zk_cluster, "alice", address))

    second = await zk_cluster.push("alice", {"n": 2})                  # pushed while alice was away
    assert second["ret"] == 0 and second["data"]["online"] == 0 and second["data"]["mid"] > first["data"]["mid"]
    resumed = await TcpSubscriber.connect(standby.tcp, "alice")
    try:
        missed = (await zk_cluster.http.get(f"{zk_cluster.public}/1/msg/get",
                                            params={"k": "alice", "m": first["data"]["mid"]})).json()
        assert [msg["mid"] for msg in missed["data"]["msgs"]] == [second["data"]["mid"]]
        third = await zk_cluster.push("alice", {"n": 3})
        assert json.loads(await resumed.frame())["mid"] == third["data"]["mid"]
    finally:
        await resumed.close()
        await subscriber.close()
    assert await refused(active.tcp, "alice") == b"-n\r\n"        # the old one came back as a standby


async def _server_is(cluster: ZkCluster, key: str, address: str) -> bool:
    return bool(await cluster.server(key) == address)
