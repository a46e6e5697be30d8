"""The trace API of the admin listener (GET /msg/trace, GET /key/trace) and the wait/timeout parameters of the
push endpoints: documented answers to good and hostile input.

A standalone-shaped cluster in the test's loop (message node on SQLite, comet, web with an admin token) on free
loopback ports, reached with httpx and raw TCP subscribers.
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

import httpx
import pytest

from comet import config as comet_config
from comet.node import CometNode
from message import config as message_config
from message.node import MessageNode
from tests.helpers import eventually, free_port
from tests.integration.conftest import TcpSubscriber
from web import config as web_config
from web.node import WebNode

TOKEN = "s3cret-admin-token"


@dataclass
class Env:
    admin: httpx.AsyncClient
    tcp: tuple[str, int]
    message: MessageNode

    async def get(self, path: str, **params: Any) -> dict[str, Any]:
        reply = await self.admin.get(path, params=params)
        assert reply.status_code == 200, reply.text
        result: dict[str, Any] = reply.json()
        return result

    async def push(self, key: str, body: Any = None, path: str = "/push/private", **params: Any) -> dict[str, Any]:
        reply = await self.admin.post(path, params={"key": key, "expire": 600, **params},
                                      content=json.dumps(body or {"hi": 1}))
        assert reply.status_code == 200, reply.text
        result: dict[str, Any] = reply.json()
        return result


async def start(tmp_path, trace: bool = True) -> tuple[list[Any], Env]:
    """Start the three nodes; on a port taken meanwhile (other tests run on this machine), again on new ports."""
    for attempt in range(3):
        try:
            return await start_once(tmp_path, trace)
        except OSError:
            if attempt == 2:
                raise
    raise AssertionError("unreachable")


async def start_once(tmp_path, trace: bool) -> tuple[list[Any], Env]:
    ports = {name: free_port() for name in ("msg", "rpc", "tcp", "ws", "public", "admin")}
    msg_rpc, comet_rpc = f"127.0.0.1:{ports['msg']}", f"127.0.0.1:{ports['rpc']}"
    tcp, ws = f"127.0.0.1:{ports['tcp']}", f"127.0.0.1:{ports['ws']}"
    nodes = [
        MessageNode(message_config.load(None, {
            "rpc": {"bind": msg_rpc}, "trace": {"enabled": trace},
            "storage": {"backend": "sqlite", "sqlite_path": str(tmp_path / "messages.db")}})),
        CometNode(comet_config.load(None, {"bind": {"tcp": [tcp], "ws": [ws], "rpc": comet_rpc, "stat": ""},
                                           "message": {"rpc": msg_rpc}})),
        WebNode(web_config.load(None, {
            "public": {"bind": [f"127.0.0.1:{ports['public']}"]},
            "admin": {"bind": [f"127.0.0.1:{ports['admin']}"], "token": TOKEN},
            "comets": {"node1": {"rpc": [comet_rpc], "tcp": [tcp], "ws": [ws]}},
            "message": {"rpc": msg_rpc}})),
    ]
    try:
        for node in nodes:
            await node.start()
    except BaseException:
        for node in reversed(nodes):
            await node.stop()
        raise
    admin = httpx.AsyncClient(base_url=f"http://127.0.0.1:{ports['admin']}", timeout=10,
                              headers={"Authorization": f"Bearer {TOKEN}"})
    return nodes, Env(admin=admin, tcp=("127.0.0.1", ports["tcp"]), message=nodes[0])


@pytest.fixture
async def env(tmp_path):
    nodes, env = await start(tmp_path)
    yield env
    await env.admin.aclose()
    for node in reversed(nodes):
        await node.stop()


async def test_msg_trace_and_key_trace_answer_with_the_documented_shape(env):
    mid = (await env.push("alice"))["data"]["mid"]

    async def traced() -> bool:
        data = (await env.get("/msg/trace", key="alice", mid=mid))["data"]
        return [event["kind"] for event in data["events"]] == ["accepted", "routed", "stored", "written"]

    await eventually(traced)
    reply = await env.get("/msg/trace", key="alice", mid=mid)
    assert reply["ret"] == 0 and set(reply["data"]) == {"key", "mid", "events", "verdict"}
    assert reply["data"]["verdict"]["state"] == "stored_not_fetched"
    accepted = reply["data"]["events"][0]
    assert (accepted["src"], accepted["size"], accepted["expire"]) == ("127.0.0.1", len('{"hi": 1}'), 600)
    data = (await env.get("/key/trace", key="alice"))["data"]
    assert set(data) == {"key", "connections", "messages", "failures", "fetches", "deletes"}
    assert [(item["mid"], item["state"]) for item in data["messages"]] == [(mid, "stored_not_fetched")]
    unknown = (await env.get("/msg/trace", key="alice", mid=mid + 1))["data"]
    assert unknown["events"] == [] and unknown["verdict"]["state"] == "unknown"


@pytest.mark.parametrize("path, params", [
    ("/msg/trace", {"mid": "1"}),                        # no key
    ("/msg/trace", {"key": "k" * 129, "mid": "1"}),       # a key longer than 128 bytes
    ("/msg/trace", {"key": "k"}),                         # no mid
    ("/msg/trace", {"key": "k", "mid": "abc"}),
    ("/msg/trace", {"key": "k", "mid": "-1"}),
    ("/msg/trace", {"key": "k", "mid": "0"}),
    ("/msg/trace", {"key": "k", "mid": "1" * 20}),
    ("/msg/trace", {"key": "k", "mid": "9223372036854775808"}),
    ("/key/trace", {}),
    ("/key/trace", {"key": "é" * 65}),                    # 130 bytes of UTF-8
])
async def test_bad_trace_parameters_get_65534(env, path, params):
    assert await env.get(path, **params) == {"ret": 65534, "msg": "param error"}


async def test_the_trace_endpoints_need_the_admin_token_and_get(env):
    async with httpx.AsyncClient(base_url=str(env.admin.base_url)) as anonymous:
        for path in ("/msg/trace?key=k&mid=1", "/key/trace?key=k"):
            bare = await anonymous.get(path)
            assert (bare.status_code, bare.json()) == (401, {"ret": 65534, "msg": "unauthorized"})
            posted = await env.admin.post(path)
            assert (posted.status_code, posted.json()) == (405, {"ret": 65534, "msg": "method not allowed"})


@pytest.mark.parametrize("params", [
    {"wait": "maybe"}, {"wait": "ACKED"}, {"timeout": "2"}, {"wait": "acked", "timeout": "0"},
    {"wait": "acked", "timeout": "31"}, {"wait": "acked", "timeout": "abc"}, {"wait": "acked", "timeout": "1e3"},
    {"wait": "acked", "timeout": "-1"}, {"wait": "written", "timeout": "2.5555"},
])
async def test_bad_wait_parameters_get_65534_and_push_nothing(env, params):
    assert await env.push("bob", **params) == {"ret": 65534, "msg": "param error"}
    reply = await env.admin.post("/push/mprivate", params={"expire": 600, **params},
                                 content=json.dumps({"m": "{}", "k": "bob"}))
    assert reply.json() == {"ret": 65534, "msg": "param error"}
    assert (await env.get("/key/trace", key="bob"))["data"]["messages"] == []


async def test_push_outcomes_with_wait(env):
    client = await TcpSubscriber.connect(env.tcp, "carol")
    try:
        reply = await env.push("carol", wait="written")
        assert reply["data"]["online"] == 1 and reply["data"]["outcome"] == "written"
        await client.frame()
        reply = await env.push("carol", wait="acked", timeout="0.2")
        assert reply["data"]["outcome"] == "timeout"
        await client.frame()
        assert (await env.push("nobody", wait="acked"))["data"]["outcome"] == "offline"
        assert "outcome" not in (await env.push("carol"))["data"]
        multi = await env.admin.post("/push/mprivate", params={"expire": 600, "wait": "written"},
                                     content=json.dumps({"m": "{}", "k": "carol,nobody"}))
        assert multi.json() == {"ret": 0, "msg": "ok", "data": {"fk": [], "outcomes": {"carol": "written",
                                                                                         "nobody": "offline"}}}
    finally:
        await client.close()


async def test_a_message_node_that_cannot_be_reached_is_65535(env):
    await env.message.stop()
    assert await env.get("/msg/trace", key="k", mid=1) == {"ret": 65535, "msg": "internal error"}
    assert await env.get("/key/trace", key="k") == {"ret": 65535, "msg": "internal error"}


async def test_tracing_disabled_on_the_message_node_is_65535_and_pushes_still_work(tmp_path):
    nodes, env = await start(tmp_path, trace=False)
    try:
        assert (await env.push("dave"))["ret"] == 0
        assert await env.get("/msg/trace", key="dave", mid=1) == {"ret": 65535, "msg": "internal error"}
    finally:
        await env.admin.aclose()
        for node in reversed(nodes):
            await node.stop()
