"""End to end: admin HTTP push → web → comet → message → Redis → real TCP and WebSocket clients; offline fetch."""
from __future__ import annotations

import asyncio
import json
import socket

import pytest

from tests.helpers import eventually
from tests.integration.conftest import MAX_PER_KEY, Cluster, TcpSubscriber, ws_subscribe

pytestmark = [pytest.mark.redis, pytest.mark.integration]


async def test_server_get_points_at_the_comet(cluster: Cluster) -> None:
    ws = (await cluster.http.get(f"{cluster.public}/1/server/get", params={"k": "alice", "p": 1})).json()
    tcp = (await cluster.http.get(f"{cluster.public}/1/server/get", params={"k": "alice", "p": 2})).json()
    assert ws == {"ret": 0, "msg": "ok", "data": {"server": cluster.ws.removeprefix("ws://")}}
    assert tcp["data"]["server"] == "%s:%d" % cluster.tcp


async def test_push_reaches_tcp_and_websocket_byte_for_byte(cluster: Cluster) -> None:
    tcp_new = await TcpSubscriber.connect(cluster.tcp, "alice", version="1.0")
    tcp_old = await TcpSubscriber.connect(cluster.tcp, "alice", version=None)
    ws_new = await ws_subscribe(cluster.ws, "alice", version="1.0")
    ws_old = await ws_subscribe(cluster.ws, "alice", version=None)
    try:
        body = {"title": "héllo", "n": 1}
        reply = await cluster.push("alice", body)
        assert reply["ret"] == 0 and reply["data"]["online"] == 4
        mid = reply["data"]["mid"]
        raw = json.dumps(body)
        new = b'{"msg":%s,"mid":%d,"gid":0}' % (raw.encode(), mid)
        old = json.loads(json.dumps({"msg": raw, "mid": mid, "gid": 0}))
        assert await tcp_new.frame() == new
        assert json.loads(await tcp_old.frame()) == old
        assert (await asyncio.wait_for(ws_new.recv(), 5)).encode() == new
        assert json.loads(await asyncio.wait_for(ws_old.recv(), 5)) == old
    finally:
        await tcp_new.close()
        await tcp_old.close()
        await ws_new.close()
        await ws_old.close()


async def test_offline_client_fetches_exactly_what_it_missed(cluster: Cluster) -> None:
    sub = await TcpSubscriber.connect(cluster.tcp, "bob")
    first = (await cluster.push("bob", {"n": 0}))["data"]["mid"]
    last_seen = json.loads(await sub.frame())["mid"]
    assert last_seen == first
    await sub.close()
    await eventually(lambda: cluster.comet.table.count("bob") == 0)

    missed = [(await cluster.push("bob", {"n": n}))["data"] for n in (1, 2, 3)]
    assert all(item["online"] == 0 for item in missed)
    mids = [item["mid"] for item in missed]
    assert mids == sorted(mids) and len(set(mids)) == 3 and mids[0] > last_seen

    v1 = await cluster.fetch("bob", last_seen)
    assert v1["ret"] == 0
    assert [(m["mid"], m["msg"], m["gid"]) for m in v1["data"]["msgs"]] == [
        (mid, {"n": n}, 0) for mid, n in zip(mids, (1, 2, 3))]
    assert "trimmed" not in v1["data"]

    legacy = (await cluster.http.get(f"{cluster.public}/msg/get", params={"key": "bob", "mid": last_seen})).json()
    assert legacy["ret"] == 0 and legacy["data"]["pmsgs"] == []
    decoded = [json.loads(item) for item in legacy["data"]["msgs"]]
    assert [d["mid"] for d in decoded] == mids
    assert [json.loads(d["msg"]) if isinstance(d["msg"], str) else d["msg"] for d in decoded] == [
        {"n": 1}, {"n": 2}, {"n": 3}]


async def test_expire_zero_is_delivered_online_and_never_stored(cluster: Cluster) -> None:
    ws = await ws_subscribe(cluster.ws, "carol")
    try:
        reply = await cluster.push("carol", {"live": True}, expire=0)
        assert reply["data"]["online"] == 1
        assert json.loads(await asyncio.wait_for(ws.recv(), 5))["mid"] == reply["data"]["mid"]
        assert (await cluster.fetch("carol", 0)).get("data", {}).get("msgs", []) == []
        later = (await cluster.push("carol", {"live": False}))["data"]["mid"]
        assert later > reply["data"]["mid"], "a mid of an unstored message is still below later mids"
    finally:
        await ws.close()


async def test_expired_messages_are_not_returned_and_reported_trimmed(cluster: Cluster) -> None:
    short = (await cluster.push("dave", {"short": 1}, expire=1))["data"]["mid"]
    long = (await cluster.push("dave", {"long": 1}, expire=600))["data"]["mid"]
    await asyncio.sleep(2.1)
    data = (await cluster.fetch("dave", 0))["data"]
    assert [m["mid"] for m in data["msgs"]] == [long]
    assert data.get("trimmed") is True
    assert "trimmed" not in (await cluster.fetch("dave", short))["data"]


async def test_cap_trims_the_oldest_and_reports_trimmed(cluster: Cluster) -> None:
    mids = [(await cluster.push("erin", {"same": "payload"}))["data"]["mid"] for _ in range(MAX_PER_KEY + 3)]
    data = (await cluster.fetch("erin", 0))["data"]
    assert [m["mid"] for m in data["msgs"]] == mids[-MAX_PER_KEY:], "equal payloads never collapse"
    assert data["trimmed"] is True
    above = (await cluster.fetch("erin", mids[2]))["data"]
    assert [m["mid"] for m in above["msgs"]] == mids[3:]
    assert "trimmed" not in above


async def test_concurrent_pushes_arrive_in_mid_order(cluster: Cluster) -> None:
    sub = await TcpSubscriber.connect(cluster.tcp, "frank")
    try:
        replies = await asyncio.gather(*(cluster.push("frank", {"n": n}, expire=600) for n in range(40)))
        assert all(r["ret"] == 0 for r in replies)
        received = [json.loads(await sub.frame())["mid"] for _ in range(40)]
        assert received == sorted(received) and len(set(received)) == 40
        assert sorted(received) == sorted(r["data"]["mid"] for r in replies)
    finally:
        await sub.close()


async def test_mprivate_pushes_every_key(cluster: Cluster) -> None:
    subs = {key: await TcpSubscriber.connect(cluster.tcp, key) for key in ("k1", "k2", "k3")}
    try:
        body = json.dumps({"m": json.dumps({"group": "hi"}), "k": "k1,k2,k3"})
        reply = (await cluster.http.post(f"{cluster.admin}/push/mprivate", params={"expire": 600},
                                         content=body)).json()
        assert reply == {"ret": 0, "msg": "ok", "data": {"fk": []}}
        for key, sub in subs.items():
            got = json.loads(await sub.frame())
            assert got["msg"] == {"group": "hi"}
            assert [m["mid"] for m in (await cluster.fetch(key, 0))["data"]["msgs"]] == [got["mid"]]
    finally:
        for sub in subs.values():
            await sub.close()


async def test_msg_del_deletes_and_closes_the_channel(cluster: Cluster) -> None:
    await cluster.push("gina", {"old": 1})
    sub = await TcpSubscriber.connect(cluster.tcp, "gina")
    reply = (await cluster.http.post(f"{cluster.admin}/msg/del", data={"key": "gina"})).json()
    assert reply["ret"] == 0
    assert await asyncio.wait_for(sub.reader.read(), 5) == b"", "the comet closed the key's connection"
    await sub.close()
    assert (await cluster.fetch("gina", 0)).get("data", {}).get("msgs", []) == []


async def test_nodes_keep_serving_after_hostile_input(cluster: Cluster) -> None:
    garbage = [b"\x00\xff" * 3000, b"*9\r\n", b"*3\r\n$3\r\nsub\r\n$999999\r\n", b"GET / HTTP/1.1\r\n\r\n"]
    for payload in garbage:
        reader, writer = await asyncio.open_connection(*cluster.tcp)
        writer.write(payload)
        try:
            reply = await asyncio.wait_for(reader.read(), 10)
        except ConnectionResetError:  # closed with our garbage unread: the kernel answers with a reset
            reply = b""
        assert reply in (b"", b"-p\r\n"), reply
        writer.close()
    bad = await cluster.http.post(f"{cluster.admin}/push/private", params={"key": "h", "expire": 60},
                                  content=b"{not json")
    assert bad.json()["ret"] == 65534
    with socket.create_connection(cluster.tcp) as raw:
        raw.sendall(b"\r\n" * 10)
    sub = await TcpSubscriber.connect(cluster.tcp, "hank")
    try:
        mid = (await cluster.push("hank", {"still": "alive"}))["data"]["mid"]
        assert json.loads(await sub.frame())["mid"] == mid
    finally:
        await sub.close()
