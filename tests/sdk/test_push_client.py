"""The server SDK (web/push_client.py) against a real web node: every method, every error mapping, keep-alive."""
from __future__ import annotations

import asyncio
from typing import Any

import pytest

from comet.client import CometNodeInfo
from tests.helpers import eventually, free_port
from tests.sdk.conftest import SdkCluster, collect
from tests.sdk.proxy import TcpProxy
from thirdparty.ring import Ring
from web.push_client import (
    AuthError, BadParameterError, DeleteResult, MultiPushResult, NoNodeError, PushClient, PushResult,
    RequestTimeout, ServerError, TransportError,
)

pytestmark = [pytest.mark.redis, pytest.mark.integration]


def client(cluster: SdkCluster, **options: Any) -> PushClient:
    options.setdefault("token", cluster.admin_token or None)
    return PushClient(cluster.admin, public_url=cluster.public, **options)


async def test_push_private_reaches_a_subscriber_byte_for_byte(cluster: SdkCluster) -> None:
    subscriber = cluster.subscriber("alice")
    got: list[Any] = []
    task = asyncio.create_task(collect(subscriber, got))
    await asyncio.wait_for(subscriber.wait_live(), 5)
    async with client(cluster) as push:
        raw = b'{ "title" : "h\xc3\xa9llo", "n": [1, 2.50] }'
        first = await push.push_private("alice", raw, expire=600)
        second = await push.push_private("alice", {"title": "héllo"}, expire=0)     # online only
        third = await push.push_private("alice", "just text", expire=60)
    assert isinstance(first, PushResult) and first.online == 1 and first.mid < second.mid < third.mid
    await eventually(lambda: len(got) == 3)
    assert [m.raw for m in got] == [raw, '{"title":"héllo"}'.encode(), b'"just text"']
    assert [m.mid for m in got] == [first.mid, second.mid, third.mid]
    await subscriber.close()
    await task


async def test_fetch_and_server_for_on_the_public_listener(cluster: SdkCluster) -> None:
    async with client(cluster) as push:
        pushed = [(await push.push_private("bob", {"n": n}, expire=600)).mid for n in range(3)]
        assert (await push.push_private("bob", {"n": 3}, expire=0)).online == 0      # not stored
        page = await push.fetch("bob", 0)
        assert [m.mid for m in page.messages] == pushed and not page.trimmed
        assert [m.value for m in page.messages] == [{"n": 0}, {"n": 1}, {"n": 2}]
        assert (await push.fetch("bob", pushed[-1])).messages == []
        assert await push.server_for("bob", "tcp") == cluster.tcp
        assert await push.server_for("bob", "ws") == cluster.ws
        with pytest.raises(ValueError):
            await push.server_for("bob", "udp")
    with pytest.raises(ValueError, match="public_url"):
        await PushClient(cluster.admin).fetch("bob", 0)


async def test_delete_removes_stored_messages_and_closes_connections(cluster: SdkCluster) -> None:
    subscriber = cluster.subscriber("carol")
    await asyncio.wait_for(subscriber.wait_live(), 5)
    async with client(cluster) as push:
        for n in range(2):
            await push.push_private("carol", {"n": n}, expire=600)
        assert await push.delete("carol") == DeleteResult(deleted=2, closed=1)
        assert (await push.fetch("carol", 0)).messages == []
        await eventually(lambda: subscriber.stats.sessions == 2)     # it came back, and found nothing to fetch
        assert await push.delete("carol") == DeleteResult(deleted=0, closed=1)


async def test_push_mprivate_reports_the_keys_of_an_unreachable_comet(make_cluster: Any) -> None:
    dead = {"rpc": [f"127.0.0.1:{free_port()}"], "tcp": ["127.0.0.1:1"], "ws": ["127.0.0.1:1"]}
    cluster = await make_cluster(extra_comets={"node2": dead})
    ring = Ring({"node1": 1, "node2": 1})
    keys = [f"user{i}" for i in range(12)]
    on_dead = [key for key in keys if ring.get(key) == "node2"]
    assert 0 < len(on_dead) < len(keys)
    async with client(cluster) as push:
        assert await push.push_mprivate(keys, {"hello": "all"}, expire=600) == MultiPushResult(on_dead)
        alive = next(key for key in keys if key not in on_dead)
        assert [m.value for m in (await push.fetch(alive, 0)).messages] == [{"hello": "all"}]
        with pytest.raises(ServerError) as caught:                  # 65535: its comet cannot be reached
            await push.push_private(on_dead[0], {"n": 1}, expire=600)
        assert caught.value.ret == 65535


async def test_no_node_and_bad_parameters(cluster: SdkCluster) -> None:
    async with client(cluster) as push:
        for call in (lambda: push.push_private("k\x01", {}, 60),                 # the web node refuses: 65534
                     lambda: push.push_private("k", b"{not json", 60),
                     lambda: push.push_private("k", {}, 10 ** 9),
                     lambda: push.push_mprivate(["a"] * 1001, {}, 60)):
            with pytest.raises(BadParameterError) as caught:
                await call()
            assert (caught.value.ret, caught.value.status) == (65534, 200)
        for call in (lambda: push.push_private("", {}, 60),                       # refused before any request
                     lambda: push.push_private("k", {"x": float("nan")}, 60),
                     lambda: push.push_private("k", {}, -1),
                     lambda: push.push_mprivate(["a,b"], {}, 60),
                     lambda: push.push_mprivate(["a", ""], {}, 60),
                     lambda: push.push_mprivate("ab", {}, 60),
                     lambda: push.fetch("k", -1)):
            with pytest.raises(BadParameterError) as caught:
                await call()
            assert caught.value.status == 0
        assert cluster.web.view is not None
        await cluster.web.view.update([])                                         # no comet at all: 1001
        with pytest.raises(NoNodeError) as no_node:
            await push.push_private("k", {}, 60)
        assert no_node.value.ret == 1001
        with pytest.raises(NoNodeError):
            await push.server_for("k")
        await cluster.web.view.update([CometNodeInfo("node1", 1, [cluster.rpc], [cluster.tcp], [cluster.ws])])
        assert (await push.push_private("k", {}, 60)).online == 0


async def test_admin_token(make_cluster: Any) -> None:
    cluster = await make_cluster(admin_token="t" * 32)
    for token in (None, "wrong"):
        async with client(cluster, token=token) as push:
            with pytest.raises(AuthError) as caught:
                await push.push_private("k", {}, 60)
            assert caught.value.status == 401
            await push.fetch("k", 0)                 # the public listener needs no token
    async with client(cluster) as push:
        assert (await push.push_private("k", {}, 60)).online == 0


async def test_transport_errors_and_timeouts() -> None:
    async with PushClient(f"http://127.0.0.1:{free_port()}") as push:
        with pytest.raises(TransportError, match="cannot connect"):
            await push.push_private("k", {}, 60)

    async def silent(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.read()          # never answers
        writer.close()

    server = await asyncio.start_server(silent, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        async with PushClient(f"http://127.0.0.1:{port}", timeout=0.2) as push:
            with pytest.raises(RequestTimeout):
                await push.push_private("k", {}, 60)
    finally:
        server.close()
        await server.wait_closed()


async def test_connections_are_kept_alive_and_renewed_after_the_server_closed_them(make_cluster: Any) -> None:
    cluster = await make_cluster(web_limits={"idle_timeout": 0.2})
    host, port = cluster.admin.removeprefix("http://").split(":")
    proxy = await TcpProxy((host, int(port))).start()
    try:
        async with PushClient(f"http://{proxy.address}") as push:
            for n in range(5):
                await push.push_private("k", {"n": n}, 60)
            assert proxy.connections == 1
            await asyncio.sleep(0.5)                 # the web node closes the idle connection
            await push.push_private("k", {"n": 5}, 60)
            assert proxy.connections == 2
    finally:
        await proxy.close()


async def test_the_reply_body_is_checked(cluster: SdkCluster) -> None:
    """Something else than a web node on the admin URL (here its public listener: 404 envelopes)."""
    async with PushClient(cluster.public) as push:
        with pytest.raises(BadParameterError, match="not found") as caught:
            await push.push_private("k", {}, 60)
        assert caught.value.status == 404
