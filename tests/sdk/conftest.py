"""An in-process cluster for the SDK tests (as tests/integration/conftest.py builds it: message on a real Redis,
comet and web on free loopback ports, real MessagePack-RPC between them), with what these tests also need: a
comet that can be stopped and started again on the same ports, comet limits (a 1 s heartbeat), an admin token,
and client addresses published through a :class:`~tests.sdk.proxy.TcpProxy`.
"""
from __future__ import annotations

import contextlib
import json
import ssl
from dataclasses import dataclass, field
from typing import Any, AsyncIterator, Awaitable, Callable

import httpx
import pytest

from comet import config as comet_config
from comet.node import CometNode
from comet.subscriber import Subscriber
from message import config as message_config
from message.node import MessageNode
from tests.helpers import free_port
from tests.sdk.proxy import TcpProxy
from web import config as web_config
from web.node import WebNode

MAX_PER_KEY = 64


@dataclass
class SdkCluster:
    public: str
    admin: str
    http: httpx.AsyncClient
    message: MessageNode
    comet: CometNode
    web: WebNode
    comet_config: comet_config.CometConfig
    tcp: str
    ws: str
    rpc: str
    admin_token: str = ""
    proxies: dict[str, TcpProxy] = field(default_factory=dict)
    subscribers: list[Subscriber] = field(default_factory=list)

    async def push(self, key: str, body: Any, expire: int = 600) -> dict[str, Any]:
        headers = {"Authorization": f"Bearer {self.admin_token}"} if self.admin_token else {}
        reply = await self.http.post(f"{self.admin}/push/private", params={"key": key, "expire": expire},
                                     content=json.dumps(body), headers=headers)
        result: dict[str, Any] = reply.json()
        return result

    async def push_mid(self, key: str, body: Any, expire: int = 600) -> int:
        reply = await self.push(key, body, expire)
        assert reply["ret"] == 0, reply
        mid: int = reply["data"]["mid"]
        return mid

    def subscriber(self, key: str, **options: Any) -> Subscriber:
        """A Subscriber on this cluster's public listener, closed after the test; fast reconnects."""
        from comet.subscriber_logic import ReconnectPolicy
        options.setdefault("reconnect", ReconnectPolicy(initial=0.05, maximum=0.3))
        subscriber = Subscriber(self.public, key, **options)
        self.subscribers.append(subscriber)
        return subscriber

    async def stop_comet(self) -> None:
        await self.comet.stop()

    async def start_comet(self) -> None:
        self.comet = CometNode(self.comet_config)
        await self.comet.start()


async def build_cluster(redis_url: str, *, limits: dict[str, Any] | None = None, admin_token: str = "",
                        proxy: tuple[str, ...] = (), max_per_key: int = MAX_PER_KEY,
                        extra_comets: dict[str, dict[str, Any]] | None = None, comet: dict[str, Any] | None = None,
                        web_limits: dict[str, Any] | None = None, tls: dict[str, str] | None = None,
                        storage: dict[str, Any] | None = None) -> SdkCluster:
    """``limits``: comet ``[limits]``; ``comet``: other comet sections (``auth``); ``proxy``: put a TcpProxy in
    front of the "tcp", "ws" or "public" listener (the web node publishes the proxy's address); ``tls``: ``{"cert",
    "key"}`` for every client-facing listener (comet TCP and WebSocket, web public and admin); ``storage``: more
    message ``[storage]`` keys (``max_public``)."""
    ports = {name: free_port() for name in ("msg", "rpc", "tcp", "ws", "public", "admin")}
    msg_rpc, comet_rpc = f"127.0.0.1:{ports['msg']}", f"127.0.0.1:{ports['rpc']}"
    tcp, ws = f"127.0.0.1:{ports['tcp']}", f"127.0.0.1:{ports['ws']}"
    proxies: dict[str, TcpProxy] = {}
    published = {"tcp": tcp, "ws": ws}
    for name in proxy:
        proxies[name] = await TcpProxy(("127.0.0.1", ports[name] if name in ("tcp", "ws") else ports["public"])).start()
        if name in published:
            published[name] = proxies[name].address
    message = MessageNode(message_config.load(None, {
        "rpc": {"bind": msg_rpc},
        "storage": {"backend": "redis", "redis": {"r1": redis_url}, "max_per_key": max_per_key, **(storage or {})}}))
    config = comet_config.load(None, {
        "bind": {"tcp": [tcp], "ws": [ws], "rpc": comet_rpc, "stat": ""},
        "message": {"rpc": msg_rpc}, "limits": {"timer_tick": 0.1, **(limits or {})}, "tls": tls or {},
        **(comet or {})})
    comet_node = CometNode(config)
    web = WebNode(web_config.load(None, {
        "public": {"bind": [f"127.0.0.1:{ports['public']}"]},
        "admin": {"bind": [f"127.0.0.1:{ports['admin']}"], "token": admin_token},
        "comets": {"node1": {"rpc": [comet_rpc], "tcp": [published["tcp"]], "ws": [published["ws"]]},
                   **(extra_comets or {})},
        "rpc": {"comet_timeout": 1.0},
        "limits": web_limits or {},
        "tls": tls or {},
        "message": {"rpc": msg_rpc}}))
    started: list[Any] = []
    try:
        for node in (message, comet_node, web):
            started.append(node)     # before start(): a start that fails half-way is stopped too
            await node.start()
    except BaseException:   # leave no listener or socket behind for the next test
        for node in reversed(started):
            with contextlib.suppress(Exception):
                await node.stop()
        for each in proxies.values():
            await each.close()
        raise
    scheme = "https" if tls else "http"
    public = f"{scheme}://127.0.0.1:{ports['public']}"
    if "public" in proxies:
        public = f"{scheme}://{proxies['public'].address}"
    http = httpx.AsyncClient(timeout=5, verify=ssl.create_default_context(cafile=tls["cert"]) if tls else True)
    return SdkCluster(public=public, admin=f"{scheme}://127.0.0.1:{ports['admin']}", http=http,
                      message=message, comet=comet_node, web=web, comet_config=config, tcp=tcp, ws=ws, rpc=comet_rpc,
                      admin_token=admin_token, proxies=proxies)


async def close_cluster(cluster: SdkCluster) -> None:
    for subscriber in cluster.subscribers:
        await subscriber.close()
    await cluster.http.aclose()
    for proxy in cluster.proxies.values():
        await proxy.close()
    for node in (cluster.web, cluster.comet, cluster.message):
        with contextlib.suppress(Exception):
            await node.stop()


@pytest.fixture
async def make_cluster(redis_url: str) -> AsyncIterator[Callable[..., Awaitable[SdkCluster]]]:
    """``await make_cluster(limits=..., admin_token=..., proxy=("tcp", "public"))`` -> a started SdkCluster."""
    made: list[SdkCluster] = []

    async def make(**options: Any) -> SdkCluster:
        cluster = await build_cluster(redis_url, **options)
        made.append(cluster)
        return cluster

    yield make
    for cluster in reversed(made):
        await close_cluster(cluster)


@pytest.fixture
async def cluster(make_cluster: Callable[..., Awaitable[SdkCluster]]) -> SdkCluster:
    return await make_cluster()


async def collect(subscriber: Subscriber, into: list[Any], stop_after: int | None = None) -> None:
    """Iterate ``subscriber`` into ``into`` (until ``stop_after`` messages, or the iteration ends)."""
    async for message in subscriber:
        into.append(message)
        if stop_after is not None and len(into) >= stop_after:
            return
