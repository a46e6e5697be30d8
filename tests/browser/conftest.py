"""Fixtures of the browser tests: an in-process pushcluster and headless Chromium.

The cluster is real Redis, message, comet and web nodes in the test's event loop, on loopback ports. The comet
can be restarted in place and can require subscribe tokens. The browser is Debian's /usr/bin/chromium, driven by
Playwright's async API. ``playwright install`` is never needed. The tests are skipped when Chromium is missing.

The browser is launched once per module. So every browser test and fixture runs on the module's event loop
(``loop_scope="module"``): Playwright's objects belong to the loop that made them.
"""
from __future__ import annotations

import asyncio
import json
import os
import time
from dataclasses import dataclass, field
from typing import Any, AsyncIterator, Awaitable, Callable

import httpx
import pytest
import pytest_asyncio

from comet import config as comet_config
from comet.node import CometNode
from message import config as message_config
from message.node import MessageNode
from tests.helpers import free_port
from web import config as web_config
from web.node import WebNode

CHROMIUM = "/usr/bin/chromium"
LAUNCH_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
               "--disable-sync", "--no-first-run"]
SECRET = "browser-tests-secret-0123456789"   # the comet's token secret when a test asks for tokens
MAX_PER_KEY = 5                              # messages kept per key: a longer offline spell makes a gap
TIMEOUT_MS = 8000                            # Playwright's wait for any one thing

needs_chromium = pytest.mark.skipif(not os.path.exists(CHROMIUM),
                                    reason=f"{CHROMIUM} is missing (Debian package chromium; see .ci/run)")


@dataclass
class BrowserCluster:
    """One in-process cluster: its public/admin URLs, an HTTP client, and its comet (restartable)."""

    public: str
    admin: str
    http: httpx.AsyncClient
    comet_config: comet_config.CometConfig
    comet: CometNode
    message: MessageNode
    web: WebNode
    started: list[Any] = field(default_factory=list)   # nodes to stop at the end, in start order

    async def push(self, key: str, body: Any, expire: int = 600) -> dict[str, Any]:
        """POST /push/private; the reply's data (mid, online). A comet that is starting (ret 65535) is retried."""
        deadline = time.monotonic() + 5
        while True:
            reply = await self.http.post(f"{self.admin}/push/private", params={"key": key, "expire": expire},
                                         content=json.dumps(body))
            assert reply.status_code == 200, reply.text
            envelope: dict[str, Any] = reply.json()
            if envelope["ret"] == 0:
                data: dict[str, Any] = envelope["data"]
                return data
            assert envelope["ret"] == 65535 and time.monotonic() < deadline, envelope
            await asyncio.sleep(0.05)

    async def restart_comet(self, down: Callable[[], Awaitable[None]] | None = None) -> None:
        """Stop the comet (its connections close), await ``down()``, then start a new one on the same ports."""
        await self.comet.stop()
        if down is not None:
            await down()
        self.comet = CometNode(self.comet_config)
        await self.comet.start()


ClusterFactory = Callable[..., Awaitable[BrowserCluster]]


@pytest_asyncio.fixture(loop_scope="module")
async def make_cluster(redis_url: str) -> AsyncIterator[ClusterFactory]:
    """``await make_cluster(tokens=False)``: start a cluster (at most one per test); stopped after the test."""
    clusters: list[BrowserCluster] = []

    async def start(tokens: bool = False) -> BrowserCluster:
        ports = {name: free_port() for name in ("msg", "rpc", "tcp", "ws", "public", "admin")}
        msg_rpc, comet_rpc = f"127.0.0.1:{ports['msg']}", f"127.0.0.1:{ports['rpc']}"
        tcp, ws = f"127.0.0.1:{ports['tcp']}", f"127.0.0.1:{ports['ws']}"
        message = MessageNode(message_config.load(None, {
            "rpc": {"bind": msg_rpc},
            "storage": {"backend": "redis", "redis": {"r1": redis_url}, "max_per_key": MAX_PER_KEY}}))
        comet_overrides: dict[str, Any] = {
            "bind": {"tcp": [tcp], "ws": [ws], "rpc": comet_rpc, "stat": ""},
            "message": {"rpc": msg_rpc},
            # 1 s heartbeats for the heartbeat test; a long grace, so that only the client can end a connection whose
            # heartbeat replies went missing (within the test's waits)
            "limits": {"min_heartbeat": 1, "heartbeat_grace": 30.0}}
        if tokens:
            comet_overrides["auth"] = {"secrets": [SECRET]}
        cfg = comet_config.load(None, comet_overrides)
        web = WebNode(web_config.load(None, {
            "public": {"bind": [f"127.0.0.1:{ports['public']}"]},
            "admin": {"bind": [f"127.0.0.1:{ports['admin']}"]},
            "comets": {"node1": {"rpc": [comet_rpc], "tcp": [tcp], "ws": [ws]}},
            "message": {"rpc": msg_rpc}}))
        cluster = BrowserCluster(public=f"http://127.0.0.1:{ports['public']}",
                                 admin=f"http://127.0.0.1:{ports['admin']}", http=httpx.AsyncClient(timeout=5),
                                 comet_config=cfg, comet=CometNode(cfg), message=message, web=web)
        clusters.append(cluster)
        for node in (message, cluster.comet, web):
            await node.start()
            cluster.started.append(node)
        return cluster

    try:
        yield start
    finally:
        for cluster in clusters:
            await cluster.http.aclose()
            for node in reversed(cluster.started):
                await (cluster.comet if isinstance(node, CometNode) else node).stop()


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def browser() -> AsyncIterator[Any]:
    """Headless Chromium for the module's tests."""
    from playwright.async_api import async_playwright   # imported here: collection works without it

    async with async_playwright() as playwright:
        chromium = await playwright.chromium.launch(executable_path=CHROMIUM, args=LAUNCH_ARGS)
        try:
            yield chromium
        finally:
            await chromium.close()


@pytest_asyncio.fixture(loop_scope="module")
async def page(browser: Any) -> AsyncIterator[Any]:
    """A fresh page (own context: no storage or cache shared between tests). Fails the test on an uncaught
    JavaScript error in the page."""
    context = await browser.new_context(viewport={"width": 900, "height": 640})
    page = await context.new_page()
    page.set_default_timeout(TIMEOUT_MS)
    errors: list[str] = []
    page.on("pageerror", lambda error: errors.append(str(error)))
    try:
        yield page
    finally:
        await context.close()
    assert not errors, f"uncaught errors in the page: {errors}"
