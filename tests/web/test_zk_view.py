"""Web nodes in cluster mode against a real ZooKeeper: the view follows the registered comets and message nodes.

Comets are znodes registered by the test (CometNodeInfo JSON, as CometMembership writes them); nothing listens at
their addresses, which /server/get does not need.
"""
from __future__ import annotations

import httpx
import pytest

from comet.client import CometNodeInfo
from message.client import MessageNodeInfo
from tests.helpers import eventually, free_port
from thirdparty.ring import Ring
from thirdparty.zk import ZkUnavailable
from web.config import load
from web.node import WebNode

pytestmark = pytest.mark.zookeeper


def comet(name: str, n: int, weight: int = 1) -> CometNodeInfo:
    return CometNodeInfo(name=name, weight=weight, rpc=[f"127.0.0.2:{n}"], tcp=[f"127.0.0.3:{n}"],
                         ws=[f"127.0.0.4:{n}"])


class Web:
    def __init__(self, node: WebNode, public: str) -> None:
        self.node = node
        self.http = httpx.AsyncClient(base_url=public, timeout=5)

    async def server(self, key: str) -> object:
        reply = (await self.http.get("/1/server/get", params={"k": key, "p": 1})).json()
        return reply["data"]["server"] if reply["ret"] == 0 else reply["ret"]


@pytest.fixture
async def web_nodes(zk_hosts):
    started: list[Web] = []

    async def start(session_timeout: float = 1.0, hosts: str | None = None) -> Web:
        public = free_port()
        node = WebNode(load(None, {"public": {"bind": [f"127.0.0.1:{public}"]},
                                   "admin": {"bind": [f"127.0.0.1:{free_port()}"]},
                                   "zookeeper": {"hosts": hosts or zk_hosts, "root": "/pc",
                                                 "session_timeout": session_timeout}}))
        await node.start()
        started.append(Web(node, f"http://127.0.0.1:{public}"))
        return started[-1]

    yield start
    for web in started:
        await web.http.aclose()
        await web.node.stop()


async def test_server_get_follows_the_active_comet_of_each_name(web_nodes, zk_sessions) -> None:
    web = await web_nodes()
    assert await web.server("alice") == 1001            # no comet registered yet
    one, two, standby = await zk_sessions(), await zk_sessions(), await zk_sessions()
    await one.register("/pc/comet/node1", comet("node1", 1).to_json())
    await standby.register("/pc/comet/node1", comet("node1", 3).to_json())
    await two.register("/pc/comet/node2", comet("node2", 2, weight=2).to_json())
    await eventually(lambda: set(web.node.view.nodes) == {"node1", "node2"})
    ring = Ring({"node1": 1, "node2": 2})
    keys = [f"user{i}" for i in range(40)]
    expected = {key: "127.0.0.4:1" if ring.get(key) == "node1" else "127.0.0.4:2" for key in keys}
    assert set(expected.values()) == {"127.0.0.4:1", "127.0.0.4:2"}
    assert {key: await web.server(key) for key in keys} == expected
    await one.stop()                                    # node1's active goes; its standby takes the name
    await eventually(lambda: web.node.view.nodes["node1"].info == comet("node1", 3))
    assert {key: await web.server(key) for key in keys} == \
        {key: value.replace("127.0.0.4:1", "127.0.0.4:3") for key, value in expected.items()}


async def test_a_bad_entry_is_ignored_and_the_next_one_serves(web_nodes, zk_sessions) -> None:
    web = await web_nodes()
    writer = await zk_sessions()
    await writer.register("/pc/comet/node1", b"{not json")
    await writer.register("/pc/comet/node1", comet("node1", 5).to_json())
    await eventually(lambda: "node1" in web.node.view.nodes)
    assert await web.server("anyone") == "127.0.0.4:5"


async def test_web_nodes_side_by_side_agree(web_nodes, zk_sessions) -> None:
    first, second = await web_nodes(), await web_nodes()
    writer = await zk_sessions()
    for name, n in (("a", 1), ("b", 2), ("c", 3)):
        await writer.register(f"/pc/comet/{name}", comet(name, n).to_json())
    for web in (first, second):
        await eventually(lambda web=web: len(web.node.view.nodes) == 3)
    keys = [f"k{i}" for i in range(30)]
    assert [await first.server(key) for key in keys] == [await second.server(key) for key in keys]


async def test_message_nodes_come_from_zookeeper(web_nodes, zk_sessions) -> None:
    web = await web_nodes()
    pool = web.node.view.message_client()
    assert pool.nodes == {}
    writer = await zk_sessions()
    registration = await writer.register("/pc/message", MessageNodeInfo("127.0.0.1:7777", 2).to_json())
    await eventually(lambda: pool.nodes == {"127.0.0.1:7777": 2})
    await registration.cancel()
    await eventually(lambda: pool.nodes == {})


async def test_a_web_node_without_zookeeper_does_not_start(web_nodes) -> None:
    with pytest.raises(ZkUnavailable):
        await web_nodes(session_timeout=0.5, hosts=f"127.0.0.1:{free_port()}")
