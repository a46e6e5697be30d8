"""A real WebNode on free loopback ports, its ClusterView fed with fake comets and a fake message node."""
from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any, AsyncIterator

import httpx
import pytest

from tests.helpers import free_port
from tests.web.fakes import FakeComet, FakeMessage
from web.cluster import ClusterView
from web.config import WebConfig, load
from web.node import WebNode

COMETS = {
    "node1": {"rpc": ["127.0.0.1:1"], "tcp": ["10.0.0.1:6969", "10.0.0.11:6969"], "ws": ["10.0.0.1:6968"]},
    "node2": {"rpc": ["127.0.0.1:2"], "tcp": ["10.0.0.2:6969"], "ws": ["10.0.0.2:6968", "10.0.0.22:6968"]},
}


@dataclass
class WebEnv:
    node: WebNode
    view: ClusterView
    comets: dict[str, FakeComet]
    message: FakeMessage
    public: httpx.AsyncClient
    admin: httpx.AsyncClient
    config: WebConfig

    def key_on(self, name: str, prefix: str = "user") -> str:
        """A key that the ring maps to comet ``name``."""
        for i in range(10_000):
            key = f"{prefix}{i}"
            node = self.view.pick(key)
            if node is not None and node.name == name:
                return key
        raise AssertionError(f"no key maps to {name}")

    async def get(self, path: str, **params: Any) -> Any:
        """GET a public endpoint; the decoded JSON envelope (the HTTP status must be 200)."""
        response = await self.public.get(path, params=params)
        assert response.status_code == 200, response.text
        return response.json()

    async def assert_alive(self) -> None:
        """The node still answers a normal request."""
        reply = await self.get("/1/time/get")
        assert reply["ret"] == 0 and reply["data"]["timeid"] > 0


def web_config(public_port: int, admin_port: int, **overrides: Any) -> WebConfig:
    base: dict[str, Any] = {
        "public": {"bind": [f"127.0.0.1:{public_port}"]},
        "admin": {"bind": [f"127.0.0.1:{admin_port}"]},
        "comets": COMETS,
        "limits": {"max_body_bytes": 1024, "max_keys_per_push": 5},
    }
    for section, values in overrides.items():
        base[section] = {**base.get(section, {}), **values}
    return load(None, base)


async def start_env(**overrides: Any) -> WebEnv:
    public_port, admin_port = free_port(), free_port()
    config = web_config(public_port, admin_port, **overrides)
    comets = {name: FakeComet(name) for name in config.comets}
    message = FakeMessage()
    view = ClusterView(config.comet_nodes(), message, lambda info: comets[info.name])
    node = WebNode(config, view)
    await node.start()
    return WebEnv(node=node, view=view, comets=comets, message=message, config=config,
                  public=httpx.AsyncClient(base_url=f"http://127.0.0.1:{public_port}", timeout=5.0),
                  admin=httpx.AsyncClient(base_url=f"http://127.0.0.1:{admin_port}", timeout=5.0))


async def stop_env(env: WebEnv) -> None:
    await env.public.aclose()
    await env.admin.aclose()
    await env.node.stop()
    await env.view.close()


@pytest.fixture
async def env() -> AsyncIterator[WebEnv]:
    web = await start_env()
    try:
        yield web
    finally:
        await stop_env(web)


def envelope(response: httpx.Response) -> Any:
    """The JSON body of a plain-JSON response (checks the Content-Type)."""
    assert response.headers["content-type"] == "application/json;charset=utf-8"
    return json.loads(response.content)
