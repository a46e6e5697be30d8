"""Broadcast end to end: POST /push/all on a web node -> message node (real Redis) -> two comets -> many real TCP and
WebSocket connections, and the public fetch of a client that was offline (/1/msg/get?p=, /msg/get?pmid=).

The comets are real processes (``python -m comet``, static mode, one ring of node1 and node2) so that one can be
SIGKILLed; the message node and the web node run in the test's loop. The subscribers are raw TCP sockets and
``websockets`` clients spread over many keys and both comets, new (1.0) and old wire forms alike.
"""
from __future__ import annotations

import asyncio
import dataclasses
import json
from pathlib import Path
from typing import Any, AsyncIterator

import pytest
import websockets

from tests.helpers import eventually, free_port
from tests.integration.conftest import sub_command
from tests.integration.two_comets import COMETS, TwoComets, two_comets

pytestmark = [pytest.mark.redis, pytest.mark.integration]

CONNECT_AT_ONCE = 100   # subscribes in flight at once
READ_DEADLINE = 30.0    # seconds a connection may wait for its next frame (an upper bound, not a timing)


class Sub:
    """One subscribed client connection (TCP or WebSocket) of ``key`` on comet ``comet``."""

    def __init__(self, key: str, comet: str, old: bool) -> None:
        self.key, self.comet, self.old = key, comet, old

    async def frame(self) -> dict[str, Any]:
        raise NotImplementedError

    async def close(self) -> None:
        raise NotImplementedError

    async def message(self) -> tuple[int, int, Any]:
        """The next message's (mid, gid, decoded message): the old form carries the message as a JSON string."""
        item = await asyncio.wait_for(self.frame(), READ_DEADLINE)
        msg = json.loads(item["msg"]) if self.old else item["msg"]
        assert isinstance(item["msg"], str) == self.old, item
        return item["mid"], item["gid"], msg


class TcpSub(Sub):
    reader: asyncio.StreamReader
    writer: asyncio.StreamWriter

    async def open(self, host: str, port: int) -> TcpSub:
        self.reader, self.writer = await asyncio.open_connection(host, port)
        self.writer.write(sub_command(self.key, version=None if self.old else "1.0"))
        assert await asyncio.wait_for(self.reader.readline(), READ_DEADLINE) == b"+h\r\n"
        return self

    async def frame(self) -> dict[str, Any]:
        head = await self.reader.readline()
        assert head.startswith(b"$") and head.endswith(b"\r\n"), head
        body = await self.reader.readexactly(int(head[1:-2]) + 2)
        frame: dict[str, Any] = json.loads(body[:-2])
        return frame

    async def close(self) -> None:
        self.writer.close()
        try:
            await self.writer.wait_closed()
        except OSError:   # the comet was killed: the connection is already gone
            pass


class WsSub(Sub):
    conn: Any

    async def open(self, url: str) -> WsSub:
        query = f"key={self.key}&heartbeat=30" + ("" if self.old else "&ver=1.0")
        self.conn = await websockets.connect(f"{url}/sub?{query}")
        assert await asyncio.wait_for(self.conn.recv(), READ_DEADLINE) == "+h\r\n"
        return self

    async def frame(self) -> dict[str, Any]:
        frame: dict[str, Any] = json.loads(await self.conn.recv())
        return frame

    async def close(self) -> None:
        await self.conn.close()


class Stack(TwoComets):
    """The running stack, with the calls these tests make: broadcast, public fetch, many subscribers."""

    async def broadcast(self, body: Any, expire: int = 600) -> dict[str, Any]:
        reply = await self.http.post(f"{self.admin}/push/all", params={"expire": expire}, content=json.dumps(body))
        assert reply.status_code == 200, reply.text
        result: dict[str, Any] = reply.json()
        assert result["ret"] == 0, result
        data: dict[str, Any] = result["data"]
        return data

    async def get(self, path: str, **params: Any) -> dict[str, Any]:
        reply = await self.http.get(f"{self.public}{path}", params=params)
        assert reply.status_code == 200, reply.text
        result: dict[str, Any] = reply.json()
        return result

    async def subscribe(self, tcp: int, ws: int, keys: int, prefix: str = "user") -> list[Sub]:
        """``tcp`` + ``ws`` connections over ``keys`` keys (each key on the comet the ring gives it), half of each
        kind in the old wire form."""
        gate = asyncio.Semaphore(CONNECT_AT_ONCE)

        async def one(n: int) -> Sub:
            key = f"{prefix}{n // 4 % keys}"   # a key's connections: TCP and WebSocket, new and old form
            comet, old = self.comet_of(key), n % 4 >= 2
            async with gate:
                if n % 2 == 0:
                    return await TcpSub(key, comet, old).open(*self.tcp[comet])
                return await WsSub(key, comet, old).open(self.ws[comet])

        # even n are TCP, odd n WebSocket; n % 4 >= 2 the old wire form
        assert tcp == ws, "this helper alternates the two kinds"
        return list(await asyncio.gather(*(one(n) for n in range(tcp + ws))))


@pytest.fixture
async def stack(redis_url: str, tmp_path: Path) -> AsyncIterator[Stack]:
    async with two_comets(Stack, redis_url, tmp_path) as running:
        yield running


async def close_all(subs: list[Sub]) -> None:
    await asyncio.gather(*(sub.close() for sub in subs))


async def received(subs: list[Sub], count: int) -> list[list[tuple[int, int, Any]]]:
    """The next ``count`` messages of every connection."""
    async def read(sub: Sub) -> list[tuple[int, int, Any]]:
        return [await sub.message() for _ in range(count)]
    return list(await asyncio.gather(*(read(sub) for sub in subs)))


async def test_every_connection_gets_each_broadcast_exactly_once_in_mid_order(stack: Stack) -> None:
    subs = await stack.subscribe(tcp=600, ws=600, keys=300)
    try:
        assert {sub.comet for sub in subs} == set(COMETS)
        first = await stack.broadcast({"n": 0, "text": "héllo"})
        assert first["online"] == len(subs) and first["fc"] == []
        middle = await asyncio.gather(*(stack.broadcast({"n": n}) for n in (1, 2, 3)))   # one web node: in turn
        last = await stack.broadcast({"n": 4}, expire=0)   # the marker: nothing was delivered twice before it
        sent = sorted([(first["mid"], {"n": 0, "text": "héllo"}), *((r["mid"], {"n": n}) for n, r in
                                                                    zip((1, 2, 3), middle)), (last["mid"], {"n": 4})])
        assert len({mid for mid, _ in sent}) == 5 and sent[0][0] == first["mid"] and sent[-1][0] == last["mid"]
        expected = [(mid, 1, body) for mid, body in sent]
        for sub, got in zip(subs, await received(subs, 5)):
            assert got == expected, (sub.key, sub.comet, type(sub).__name__, sub.old)
    finally:
        await close_all(subs)


async def test_an_offline_client_fetches_stored_broadcasts_by_public_mid(stack: Stack) -> None:
    before = (await stack.get("/1/time/get"))["data"]["timeid"]
    first = await stack.broadcast({"news": 1})
    second = await stack.broadcast({"news": 2})
    assert first["online"] == second["online"] == 0 and first["mid"] > before and second["mid"] > first["mid"]

    v1 = (await stack.get("/1/msg/get", k="offline", m=0, p=before))["data"]
    assert v1 == {"msgs": [], "pmsgs": [{"msg": {"news": 1}, "mid": first["mid"], "gid": 1},
                                        {"msg": {"news": 2}, "mid": second["mid"], "gid": 1}]}
    assert (await stack.get("/1/msg/get", k="offline", m=0, p=first["mid"]))["data"]["pmsgs"] == [
        {"msg": {"news": 2}, "mid": second["mid"], "gid": 1}]
    assert await stack.get("/1/msg/get", k="offline", m=0, p=second["mid"]) == {"ret": 0, "msg": "ok"}
    assert "pmsgs" not in (await stack.get("/1/msg/get", k="offline", m=0)).get("data", {})

    legacy = (await stack.get("/msg/get", key="offline", mid=0, pmid=before))["data"]
    assert legacy["msgs"] == []
    assert [json.loads(item) for item in legacy["pmsgs"]] == [
        {"msg": '{"news": 1}', "mid": first["mid"], "gid": 1}, {"msg": '{"news": 2}', "mid": second["mid"], "gid": 1}]


async def test_a_private_and_a_public_fetch_come_back_together(stack: Stack) -> None:
    before = (await stack.get("/1/time/get"))["data"]["timeid"]
    private = (await stack.http.post(f"{stack.admin}/push/private", params={"key": "both", "expire": 600},
                                     content=b'{"mine":1}')).json()["data"]
    public = await stack.broadcast({"all": 1})
    data = (await stack.get("/1/msg/get", k="both", m=0, p=before))["data"]
    assert data == {"msgs": [{"msg": {"mine": 1}, "mid": private["mid"], "gid": 0}],
                    "pmsgs": [{"msg": {"all": 1}, "mid": public["mid"], "gid": 1}]}


async def test_expire_zero_is_delivered_but_not_fetchable(stack: Stack) -> None:
    subs = await stack.subscribe(tcp=20, ws=20, keys=10, prefix="live")
    try:
        before = (await stack.get("/1/time/get"))["data"]["timeid"]
        reply = await stack.broadcast({"live": True}, expire=0)
        assert reply["online"] == len(subs)
        for got in await received(subs, 1):
            assert got == [(reply["mid"], 1, {"live": True})]
        assert await stack.get("/1/msg/get", k="late", m=0, p=before) == {"ret": 0, "msg": "ok"}
        assert (await stack.broadcast({"stored": True}))["mid"] > reply["mid"], "the next public mid is above it"
    finally:
        await close_all(subs)


async def test_a_killed_comet_is_named_in_fc_and_the_other_comets_clients_get_it(stack: Stack) -> None:
    subs = await stack.subscribe(tcp=100, ws=100, keys=60, prefix="k")
    try:
        assert {sub.comet for sub in subs} == set(COMETS)
        stack.comets["node2"].kill()
        reply = await stack.broadcast({"after": "kill"})
        assert reply["fc"] == ["node2"]
        survivors = [sub for sub in subs if sub.comet == "node1"]
        assert survivors and reply["online"] == len(survivors)
        for got in await received(survivors, 1):
            assert got == [(reply["mid"], 1, {"after": "kill"})]
        fetched = (await stack.get("/1/msg/get", k="k0", m=0, p=reply["mid"] - 1))["data"]["pmsgs"]
        assert fetched == [{"msg": {"after": "kill"}, "mid": reply["mid"], "gid": 1}], "node2's clients can fetch it"
    finally:
        await close_all(subs)


@pytest.fixture
async def retry_stack(redis_url: str, tmp_path: Path) -> AsyncIterator[Stack]:
    overrides = {"broadcast": {"retry_interval": 0.1, "retry_for": 60.0}}
    async with two_comets(Stack, redis_url, tmp_path, web_overrides=overrides) as running:
        yield running


async def test_a_comet_missed_during_a_failover_gets_the_broadcast_by_retry(retry_stack: Stack) -> None:
    """The web's view still names a dead instance for node2 while node2's clients are already connected to the
    node that took the name over: the broadcast fails there (fc), and once the view names the live node the
    background retry writes it to those clients live, once."""
    stack = retry_stack
    view = stack.web.view
    assert view is not None
    subs = await stack.subscribe(tcp=10, ws=10, keys=8, prefix="f")
    try:
        assert {sub.comet for sub in subs} == set(COMETS)
        live = view.nodes["node2"].info
        dead = dataclasses.replace(live, rpc=[f"127.0.0.1:{free_port()}"])   # nothing listens there
        await view.update([view.nodes["node1"].info, dead])
        reply = await stack.broadcast({"during": "failover"}, expire=0)
        assert reply["fc"] == ["node2"]
        await view.update([view.nodes["node1"].info, live])   # the view catches up with the promoted node
        for got in await received(subs, 1):
            assert got == [(reply["mid"], 1, {"during": "failover"})]
        marker = await stack.broadcast({"marker": 1}, expire=0)
        assert marker["fc"] == []
        for got in await received(subs, 1):
            assert got == [(marker["mid"], 1, {"marker": 1})], "the retried broadcast came once"
        retries = stack.web.broadcast_retries
        assert retries is not None
        await eventually(lambda: retries.stats()["succeeded"] == 1)
    finally:
        await close_all(subs)
