"""Message nodes in ZooKeeper: registration, the directory feeding a MessagePool, a SIGKILLed node."""
from __future__ import annotations

import asyncio
import random

import pytest

from message.client import MessageNodeInfo, MessagePool
from message.cluster import MessageDirectory, parse_nodes
from message.config import load
from message.node import MessageNode
from tests.helpers import eventually, free_port
from tests.processes import RoleProcess
from thirdparty.confload import ConfigError

pytestmark = [pytest.mark.zookeeper, pytest.mark.redis]


def node_config(redis_url: str, zk_hosts: str, address: str, **rpc) -> dict:
    return {"rpc": {"bind": address, **rpc}, "storage": {"redis": {"r1": redis_url}},
            "zookeeper": {"hosts": zk_hosts, "root": "/pc", "session_timeout": 1.0}}


@pytest.fixture
async def directory(zk_sessions):
    """A MessagePool fed from ZooKeeper, as a web or comet node has it."""
    session = await zk_sessions()
    pool = MessagePool(timeout=2.0, rng=random.Random(1))
    watcher = MessageDirectory(session, pool)
    await watcher.start(timeout=5)
    yield pool
    await watcher.stop()
    await pool.close()


def test_parse_nodes_keeps_valid_entries_once_oldest_first() -> None:
    children = {"b_0000000002": MessageNodeInfo("h:2", 2).to_json(), "a_0000000001": b"garbage",
                "c_0000000003": MessageNodeInfo("h:2", 9).to_json(), "d_0000000000": MessageNodeInfo("h:1").to_json()}
    assert parse_nodes(children) == [MessageNodeInfo("h:1"), MessageNodeInfo("h:2", 2)]


def test_cluster_mode_needs_an_address_to_publish() -> None:
    with pytest.raises(ConfigError, match="rpc.advertise"):
        load(None, {"rpc": {"bind": "0.0.0.0:7070"}, "zookeeper": {"hosts": "127.0.0.1:2181"}})
    config = load(None, {"rpc": {"bind": "0.0.0.0:7070", "advertise": "10.0.0.5:7070", "weight": 2},
                         "zookeeper": {"hosts": "127.0.0.1:2181"}})
    assert config.rpc.advertised == "10.0.0.5:7070"
    assert load(None).zookeeper.enabled is False   # static mode stays the default


async def test_a_node_registers_while_it_serves_and_deregisters_on_stop(redis_url, zk_hosts, directory) -> None:
    address = f"127.0.0.1:{free_port()}"
    node = MessageNode(load(None, node_config(redis_url, zk_hosts, address, weight=4)))
    await node.start()
    try:
        await eventually(lambda: directory.nodes == {address: 4})
        mid = await directory.save_private("k", b"1", 600)
        assert (await directory.get_private("k", 0)).msgs == [(mid, b"1")]
    finally:
        await node.stop()
    await eventually(lambda: directory.nodes == {}, timeout=0.5)   # deregistered at once, not after the session


async def test_a_killed_node_costs_no_failed_call(redis_url, zk_hosts, directory, tmp_path, caplog) -> None:
    addresses = [f"127.0.0.1:{free_port()}" for _ in range(2)]
    nodes = [RoleProcess("message", f"message{i}", node_config(redis_url, zk_hosts, address), tmp_path)
             for i, address in enumerate(addresses)]
    try:
        for node in nodes:
            node.start()
        await eventually(lambda: set(directory.nodes) == set(addresses), timeout=15)
        for _ in range(50):
            await directory.ping()   # both nodes get used (and connected) on the way
        await asyncio.to_thread(nodes[0].kill)
        await asyncio.sleep(0.2)     # the OS has closed its sockets; its znode is still there
        assert set(directory.nodes) == set(addresses)
        mids = [await directory.save_private("k", b'{"n":%d}' % n, 600) for n in range(40)]
        fetched = await directory.get_private("k", 0)
        assert [mid for mid, _msg in fetched.msgs] == mids[-len(fetched.msgs):]   # the newest, capped per key
        assert mids == sorted(set(mids))
        assert f"rpc={addresses[0]} key=k method=SavePrivate" in caplog.text   # the dead node was tried, then left
        await eventually(lambda: set(directory.nodes) == {addresses[1]}, timeout=5)   # its session expired
    finally:
        for node in nodes:
            node.close()
