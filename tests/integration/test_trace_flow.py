"""End to end: what the delivery trace says about each way a push can go, and what a push waiting for its outcome
answers.

Message (real Redis), comet ``node1`` and web nodes in the test's loop on free loopback ports; the web's ring also
holds ``node2``, whose comet is dead (nothing listens on its RPC port). Clients are raw TCP sockets (acking) and
the ``websockets`` package (not acking); the back end is httpx. Each scenario checks the whole trace, event by
event, and the verdict.
"""
from __future__ import annotations

import asyncio
import json
import time
from dataclasses import dataclass
from typing import Any, AsyncIterator

import httpx
import pytest

from comet import config as comet_config
from comet.ack_codec import tcp_ack
from comet.node import CometNode
from message import config as message_config
from message.node import MessageNode
from tests.helpers import eventually, free_port
from tests.integration.conftest import TcpSubscriber, ws_subscribe
from thirdparty.ring import Ring
from web import config as web_config
from web.node import WebNode

RING = {"node1": 1, "node2": 1}


@dataclass
class Stack:
    admin: httpx.AsyncClient
    public: httpx.AsyncClient
    tcp: tuple[str, int]
    ws: str
    comet: CometNode
    started: float

    async def push(self, key: str, body: Any, expire: int = 600, **params: Any) -> dict[str, Any]:
        reply = await self.admin.post("/push/private", params={"key": key, "expire": expire, **params},
                                      content=json.dumps(body))
        assert reply.status_code == 200, reply.text
        result: dict[str, Any] = reply.json()
        return result

    async def msg_trace(self, key: str, mid: int, events: int) -> dict[str, Any]:
        """The trace of ``key``/``mid`` once it holds ``events`` events (records reach the store in batches)."""
        found: dict[str, Any] = {}

        async def complete() -> bool:
            reply = (await self.admin.get("/msg/trace", params={"key": key, "mid": mid})).json()
            found.update(reply["data"])
            return len(reply["data"]["events"]) >= events

        await eventually(complete)
        return found

    async def conn_id(self, key: str) -> int:
        """The id of the key's first connection, once its subscribe is in the key's history."""
        async def opened() -> bool:
            return bool((await self.key_trace(key))["connections"])

        await eventually(opened)
        conn: int = (await self.key_trace(key))["connections"][0]["conn"]
        return conn

    async def key_trace(self, key: str) -> dict[str, Any]:
        reply = (await self.admin.get("/key/trace", params={"key": key})).json()
        assert reply["ret"] == 0, reply
        data: dict[str, Any] = reply["data"]
        return data


def key_on(node: str, prefix: str) -> str:
    ring = Ring(RING)
    return next(f"{prefix}{i}" for i in range(1000) if ring.get(f"{prefix}{i}") == node)


@pytest.fixture
async def stack(redis_url: str) -> AsyncIterator[Stack]:
    ports = {name: free_port() for name in ("msg", "rpc", "tcp", "ws", "public", "admin", "dead")}
    msg_rpc, comet_rpc = f"127.0.0.1:{ports['msg']}", f"127.0.0.1:{ports['rpc']}"
    tcp, ws = f"127.0.0.1:{ports['tcp']}", f"127.0.0.1:{ports['ws']}"
    comet = CometNode(comet_config.load(None, {"bind": {"tcp": [tcp], "ws": [ws], "rpc": comet_rpc, "stat": ""},
                                               "ring": {"nodes": RING}, "message": {"rpc": msg_rpc}}))
    nodes = [
        MessageNode(message_config.load(None, {"rpc": {"bind": msg_rpc},
                                               "storage": {"backend": "redis", "redis": {"r1": redis_url}}})),
        comet,
        WebNode(web_config.load(None, {
            "public": {"bind": [f"127.0.0.1:{ports['public']}"]}, "admin": {"bind": [f"127.0.0.1:{ports['admin']}"]},
            "comets": {"node1": {"rpc": [comet_rpc], "tcp": [tcp], "ws": [ws]},
                       "node2": {"rpc": [f"127.0.0.1:{ports['dead']}"], "tcp": ["127.0.0.1:1"]}},
            "message": {"rpc": msg_rpc}})),
    ]
    started = time.time()
    try:
        for node in nodes:
            await node.start()
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{ports['admin']}", timeout=10) as admin, \
                httpx.AsyncClient(base_url=f"http://127.0.0.1:{ports['public']}", timeout=10) as public:
            yield Stack(admin, public, ("127.0.0.1", ports["tcp"]), f"ws://{ws}", comet, started)
    finally:
        for node in reversed(nodes):
            await node.stop()


def timeline(stack: Stack, events: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The events without their times, after checking that the times are in order and within the test."""
    times = [event["at"] for event in events]
    assert times == sorted(times) and stack.started <= times[0] and times[-1] <= time.time(), times
    return [{name: value for name, value in event.items() if name != "at"} for event in events]


def written(conn: int | None, at: float) -> dict[str, Any]:
    conns = [] if conn is None else [{"conn": conn, "at": at}]
    return {"kind": "written", "node": "node1", "count": len(conns), "conns": conns}


async def test_an_online_acking_client(stack: Stack) -> None:
    key = key_on("node1", "acker")
    client = await TcpSubscriber.connect(stack.tcp, key)
    # the client acks what it receives, while the push waits for that ack
    push = asyncio.ensure_future(stack.push(key, {"n": 1}, wait="acked", timeout="5"))
    mid = json.loads(await client.frame())["mid"]
    client.writer.write(tcp_ack(mid))
    reply = await push
    assert reply == {"ret": 0, "msg": "ok", "data": {"mid": mid, "online": 1, "outcome": "acked"}}
    conn = await stack.conn_id(key)
    trace = await stack.msg_trace(key, mid, 5)
    instance = stack.comet.tracer.instance
    at_written = trace["events"][3]["at"]
    assert timeline(stack, trace["events"]) == [
        {"kind": "accepted", "src": "127.0.0.1", "size": 8, "expire": 600},
        {"kind": "routed", "node": "node1", "instance": instance},
        {"kind": "stored", "expire": 600, "until": trace["events"][2]["at"] + 600, "shard": "r1"},
        written(conn, at_written),
        {"kind": "acked", "conn": conn, "instance": instance},
    ]
    assert trace["verdict"]["state"] == "acked" and f"connection {conn}" in trace["verdict"]["text"]
    await client.close()

    async def closed() -> bool:
        return (await stack.key_trace(key))["connections"][0]["reason"] == "client closed"

    await eventually(closed)
    [connection] = (await stack.key_trace(key))["connections"]
    assert {name: connection[name] for name in ("conn", "node", "instance", "proto", "version", "reason")} == \
        {"conn": conn, "node": "node1", "instance": instance, "proto": "tcp", "version": "1.0",
         "reason": "client closed"}
    assert connection["peer"].startswith("127.0.0.1:") and connection["opened"] <= connection["closed"]


async def test_an_online_client_that_does_not_ack(stack: Stack) -> None:
    key = key_on("node1", "quiet")
    client = await ws_subscribe(stack.ws, key)
    try:
        first = await stack.push(key, {"n": 1}, wait="written")
        second = await stack.push(key, {"n": 2}, wait="acked", timeout="0.3")
        assert [json.loads(await client.recv())["mid"] for _ in range(2)] == [first["data"]["mid"],
                                                                              second["data"]["mid"]]
    finally:
        await client.close()
    assert (first["data"]["outcome"], second["data"]["outcome"]) == ("written", "timeout")
    conn = await stack.conn_id(key)
    for reply in (first, second):
        trace = await stack.msg_trace(key, reply["data"]["mid"], 4)
        assert [event["kind"] for event in trace["events"]] == ["accepted", "routed", "stored", "written"]
        assert timeline(stack, trace["events"])[3] == written(conn, trace["events"][3]["at"])
        assert trace["verdict"]["state"] == "delivered"
        assert trace["verdict"]["text"].startswith("Delivered: written to 1 connection(s) on node1")


async def test_an_offline_key_later_fetched(stack: Stack) -> None:
    key = key_on("node1", "offline")
    reply = await stack.push(key, {"n": 1}, wait="acked")
    assert reply["data"]["online"] == 0 and reply["data"]["outcome"] == "offline"
    mid = reply["data"]["mid"]
    trace = await stack.msg_trace(key, mid, 4)
    assert timeline(stack, trace["events"]) == [
        {"kind": "accepted", "src": "127.0.0.1", "size": 8, "expire": 600},
        {"kind": "routed", "node": "node1", "instance": stack.comet.tracer.instance},
        {"kind": "stored", "expire": 600, "until": trace["events"][2]["at"] + 600, "shard": "r1"},
        written(None, 0),
    ]
    assert trace["verdict"]["state"] == "stored_not_fetched"
    fetched = (await stack.public.get("/1/msg/get", params={"k": key, "m": 0})).json()
    assert [item["mid"] for item in fetched["data"]["msgs"]] == [mid]
    trace = await stack.msg_trace(key, mid, 5)
    assert timeline(stack, trace["events"])[4] == {"kind": "fetched", "src": "127.0.0.1"}
    assert trace["verdict"] == {"state": "fetched", "text": trace["verdict"]["text"]}
    assert trace["verdict"]["text"].startswith("Fetched with /msg/get by 127.0.0.1 at ")
    [fetch] = (await stack.key_trace(key))["fetches"]
    assert {name: fetch[name] for name in ("after", "first", "last", "count", "src")} == \
        {"after": 0, "first": mid, "last": mid, "count": 1, "src": "127.0.0.1"}


async def test_an_offline_key_with_expire_zero_is_lost(stack: Stack) -> None:
    key = key_on("node1", "gone")
    reply = await stack.push(key, {"n": 1}, expire=0, wait="written")
    assert reply["data"]["outcome"] == "offline"
    trace = await stack.msg_trace(key, reply["data"]["mid"], 4)
    assert [event["kind"] for event in trace["events"]] == ["accepted", "routed", "not_stored", "written"]
    assert trace["verdict"]["state"] == "failed" and "expire 0" in trace["verdict"]["text"]


async def test_a_key_on_a_dead_node(stack: Stack) -> None:
    key = key_on("node2", "dead")
    assert await stack.push(key, {"n": 1}) == {"ret": 65535, "msg": "internal error"}
    assert await stack.push(key, {"n": 2}, wait="acked") == {"ret": 65535, "msg": "internal error"}

    async def recorded() -> bool:
        return len((await stack.key_trace(key))["failures"]) == 2

    await eventually(recorded)
    data = await stack.key_trace(key)
    assert data["messages"] == [] and data["connections"] == [] and data["fetches"] == []
    for failure in data["failures"]:
        assert stack.started <= failure.pop("at") <= time.time()
        reason = failure.pop("reason")
        assert reason.startswith("comet node2 PushPrivate: node unreachable") and "127.0.0.1" in reason
        assert failure == {"kind": "push_failed", "node": "node2", "src": "127.0.0.1", "size": 8, "expire": 600}
