"""MessagePool: weighted choice, failover only where it cannot store a message twice, node list updates.

One real message node (real Redis) plays the healthy node; scripted MessagePack-RPC servers play the broken ones
(a node that hangs up on a save after reading it, one that never answers).
"""
from __future__ import annotations

import asyncio
import random
from collections import Counter

import pytest

from message.client import FetchResult, MessageClient, MessageNodeInfo, MessagePool
from message.config import load
from message.node import MessageNode
from tests.helpers import free_port
from thirdparty.rpc_client import RemoteError, RpcTimeout, RpcUnavailable
from thirdparty.rpc_codec import Decoder, Request, encode_response

pytestmark = pytest.mark.redis


class FirstChoice(random.Random):
    """Always picks the first candidate: the order of the node list decides which node is tried first."""

    def choices(self, population, weights=None, **kwargs):
        return [population[0]]


class ScriptedNode:
    """A MessagePack-RPC server answering Ping, and doing ``on_other`` ("hang up" / "silent") for anything else."""

    def __init__(self, on_other: str) -> None:
        self.on_other = on_other
        self.received: list[str] = []
        self.server: asyncio.Server | None = None
        self.address = ""

    async def start(self) -> None:
        self.server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        self.address = "127.0.0.1:%d" % self.server.sockets[0].getsockname()[1]

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        decoder = Decoder()
        try:
            while data := await reader.read(65536):
                for frame in decoder.feed(data):
                    assert isinstance(frame, Request)
                    self.received.append(frame.method)
                    if frame.method == "MessageRPC.Ping":
                        writer.write(encode_response(frame.msgid, None, "pong"))
                    elif self.on_other == "hang up":
                        return
        finally:
            writer.close()

    async def stop(self) -> None:
        self.server.close()
        await self.server.wait_closed()


@pytest.fixture
async def healthy(redis_url):
    """A real message node: its info."""
    address = f"127.0.0.1:{free_port()}"
    node = MessageNode(load(None, {"rpc": {"bind": address}, "storage": {"redis": {"r1": redis_url}}}))
    await node.start()
    yield MessageNodeInfo(rpc=address)
    await node.stop()


@pytest.fixture
async def scripted():
    nodes: list[ScriptedNode] = []

    async def make(on_other: str) -> ScriptedNode:
        node = ScriptedNode(on_other)
        await node.start()
        nodes.append(node)
        return node

    yield make
    for node in nodes:
        await node.stop()


async def test_an_empty_pool_is_unavailable() -> None:
    pool = MessagePool()
    with pytest.raises(RpcUnavailable, match="no message node"):
        await pool.get_private("k", 0)
    await pool.close()


def test_node_info_json() -> None:
    info = MessageNodeInfo(rpc="10.0.0.1:7070", weight=3)
    assert MessageNodeInfo.from_json(info.to_json()) == info
    assert MessageNodeInfo.from_json(b'{"rpc": "h:1"}') == MessageNodeInfo("h:1", 1)
    for bad in (b"nope", b"[]", b'{"rpc": 1}', b'{"rpc": "h"}', b'{"rpc": "h:1", "weight": 0}',
                b'{"rpc": "h:1", "weight": true}', b'{"rpc": "h:1", "weight": 1001}'):
        with pytest.raises(ValueError):
            MessageNodeInfo.from_json(bad)


async def test_calls_fail_over_from_an_unreachable_node(healthy) -> None:
    dead = MessageNodeInfo(rpc=f"127.0.0.1:{free_port()}")   # nothing listens there
    pool = MessagePool([dead, healthy], rng=FirstChoice())
    try:
        mid = await pool.save_private("k", b'{"a":1}', 600)   # never sent to the dead node: safe to retry
        assert (await pool.get_private("k", 0)).msgs == [(mid, b'{"a":1}')]
        saved = await pool.save_privates(["k", "j"], b"2", 600)
        assert set(saved) == {"k", "j"} and saved["k"] > mid
        await pool.ping()
        assert await pool.del_private("k") == 2
    finally:
        await pool.close()


async def test_a_save_the_node_may_have_received_is_not_repeated(healthy, scripted) -> None:
    hangs_up = await scripted("hang up")
    pool = MessagePool([MessageNodeInfo(hangs_up.address), healthy], rng=FirstChoice())
    try:
        with pytest.raises(RpcUnavailable):
            await pool.save_private("k", b"1", 600)
        assert hangs_up.received == ["MessageRPC.Ping", "MessageRPC.SavePrivate"]
        assert await pool.get_private("k", 0) == FetchResult([], False)   # the healthy node saved nothing
    finally:
        await pool.close()


async def test_a_read_is_repeated_on_another_node_when_the_connection_breaks(healthy, scripted) -> None:
    hangs_up = await scripted("hang up")
    pool = MessagePool([MessageNodeInfo(hangs_up.address), healthy], rng=FirstChoice())
    try:
        assert await pool.get_private("k", 0) == FetchResult([], False)
        assert hangs_up.received == ["MessageRPC.GetPrivate"]
    finally:
        await pool.close()


async def test_a_timeout_is_not_repeated(healthy, scripted) -> None:
    silent = await scripted("silent")
    pool = MessagePool([MessageNodeInfo(silent.address), healthy], timeout=0.3, rng=FirstChoice())
    try:
        with pytest.raises(RpcTimeout):
            await pool.get_private("k", 0)
    finally:
        await pool.close()


async def test_a_remote_error_is_the_answer(healthy) -> None:
    pool = MessagePool([healthy])
    try:
        with pytest.raises(RemoteError) as caught:
            await pool.save_private("k", b"1", -5)
        assert caught.value.code == 65534
    finally:
        await pool.close()


async def test_weighted_choice_and_updates(healthy, redis_url) -> None:
    chosen: Counter[str] = Counter()

    class Counting(MessageClient):
        async def ping(self) -> None:
            chosen[self.address] += 1
            await super().ping()

    other_address = f"127.0.0.1:{free_port()}"
    other = MessageNode(load(None, {"rpc": {"bind": other_address}, "storage": {"redis": {"r1": redis_url}}}))
    await other.start()
    pool = MessagePool([MessageNodeInfo(healthy.rpc, 1), MessageNodeInfo(other_address, 3)],
                       client_factory=lambda address: Counting(address), rng=random.Random(7))
    try:
        for _ in range(400):
            await pool.ping()
        assert 0.6 < chosen[other_address] / 400 < 0.9   # weight 3 of 4
        await pool.update([MessageNodeInfo(other_address, 1)])
        assert pool.nodes == {other_address: 1}
        chosen.clear()
        for _ in range(20):
            await pool.ping()
        assert chosen == {other_address: 20}
        await other.stop()
        await pool.update([])
        with pytest.raises(RpcUnavailable):
            await pool.ping()
    finally:
        await pool.close()
        await other.stop()
