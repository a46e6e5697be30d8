"""Fixtures: a real CometNode on free loopback ports with an in-memory message node, and RPC clients to it.

The transport tests (the modules in ``BOTH_LOOPS``) run on asyncio's own event loop and on uvloop, which the
roles use in production: the two loops' transports differ in when they write, pause and close.
"""
from __future__ import annotations

import asyncio

import pytest
import pytest_asyncio.plugin

from comet.client import CometClient
from comet.config import load
from comet.node import CometNode
from tests.comet.clients import TRANSPORTS
from tests.comet.fakes import FakeMessage

BOTH_LOOPS = {"test_transports.py", "test_tcp.py", "test_websocket.py", "test_ws_wire.py", "test_tokens.py",
              "test_addr_limits.py", "test_tls.py"}

try:
    import uvloop
except ImportError:  # not installed (it is a dependency on Linux only)
    uvloop = None

if uvloop is not None and hasattr(pytest_asyncio.plugin, "PytestAsyncioSpecs"):  # the hook exists
    def pytest_asyncio_loop_factories(config, item):
        if item.path.name in BOTH_LOOPS:
            return {"asyncio": asyncio.new_event_loop, "uvloop": uvloop.new_event_loop}
        return {"asyncio": asyncio.new_event_loop}

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
