"""Fixtures: a real CometNode on free loopback ports with an in-memory message node, and RPC clients to it."""
from __future__ import annotations

import pytest

from comet.client import CometClient
from comet.config import load
from comet.node import CometNode
from tests.comet.clients import TRANSPORTS
from tests.comet.fakes import FakeMessage

LOOPBACK = {"tcp": ["127.0.0.1:0"], "ws": ["127.0.0.1:0"], "rpc": "127.0.0.1:0", "stat": "127.0.0.1:0"}


def node_config(limits: dict | None = None, **sections):
    overrides = {"bind": LOOPBACK, "limits": {"timer_tick": 0.05, **(limits or {})}, **sections}
    return load(None, overrides)


@pytest.fixture
async def start_node():
    """``await start_node(limits={...}, ring={...})`` -> a started CometNode with ``node.fake`` and ``node.rpc``."""
    started = []

    async def start(message: FakeMessage | None = None, **kwargs) -> CometNode:
        fake = message or FakeMessage()
        node = CometNode(node_config(**kwargs), fake)
        await node.start()
        node.fake = fake
        node.rpc = CometClient(node.addresses["rpc"][0], timeout=3.0)
        started.append(node)
        return node

    yield start
    for node in started:
        await node.rpc.close()
        await node.stop()


@pytest.fixture
async def node(start_node):
    return await start_node()


@pytest.fixture(params=sorted(TRANSPORTS))
def transport(request):
    """The client class of one transport; every test using it runs over TCP and over WebSocket."""
    return TRANSPORTS[request.param]


@pytest.fixture
async def clients():
    """Collects test clients and closes them at the end."""
    opened = []

    class Registry(list):
        async def open(self, transport, node, key, heartbeat=30, **kwargs):
            client, reply = await transport.open(node, key, heartbeat, **kwargs)
            opened.append(client)
            return client, reply

        def add(self, client):
            opened.append(client)
            return client

    yield Registry()
    for client in opened:
        await client.close()
