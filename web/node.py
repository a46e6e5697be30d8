"""WebNode: the web role's life cycle: build the cluster view, bind the public and admin listeners, stop.

Each listener is a tornado HTTPServer with a hard body cap (twice ``limits.max_body_bytes``: a larger
body is refused with HTTP 400 and the connection closed, without being buffered), an idle keep-alive
timeout and a body timeout; with ``[tls]`` cert and key it serves HTTPS (public and/or admin listeners, as
configured). A view passed in (tests, standalone mode) belongs to the caller; a view the
node builds from its config is closed by :meth:`WebNode.stop`. With ``[zookeeper] hosts`` set, the view the node
builds follows ZooKeeper (``web/zk_view.py``); a node that cannot reach ZooKeeper within the session timeout
does not start.
"""
from __future__ import annotations

import asyncio
import logging
import ssl

from tornado.httpserver import HTTPServer

from comet.client import CometAPI, CometClient, CometNodeInfo
from message.client import MessageClient
from thirdparty.confload import parse_address
from thirdparty.tls import server_context
from web.app import Api, make_admin_app, make_public_app
from web.broadcast_retry import BroadcastRetries
from web.cluster import ClusterView, CometClientFactory
from web.config import WebConfig, is_loopback
from web.metrics import web_registry
from web.stats import WebStats
from web.tracing import WebTracer, make_tracer
from web.zk_view import ZkClusterSource

log = logging.getLogger(__name__)


def comet_client_factory(config: WebConfig) -> CometClientFactory:
    """Real CometRPC clients with the config's timeout."""
    timeout = config.rpc.comet_timeout

    def comet_client(info: CometNodeInfo) -> CometAPI:
        return CometClient(info.rpc[0], timeout=timeout)

    return comet_client


def build_view(config: WebConfig) -> ClusterView:
    """The ClusterView of the config's static comet list, with real RPC clients."""
    message = MessageClient(config.message.rpc, timeout=config.message.timeout)
    return ClusterView(config.comet_nodes(), message, comet_client_factory(config))


class WebNode:
    """A web node: public listener(s) for clients, admin listener(s) for back ends."""

    def __init__(self, config: WebConfig, view: ClusterView | None = None) -> None:
        self.config = config
        self._own_view = view is None
        self._view = view
        self._zk: ZkClusterSource | None = None
        self._servers: list[HTTPServer] = []
        self._apps: list[Api] = []
        self.tracer: WebTracer | None = None
        self.stats = WebStats()  # requests and refusals of both listeners: GET /stat on the admin listener
        self.broadcast_retries: BroadcastRetries | None = None   # /push/all's failed comets, retried (made by start)

    @property
    def view(self) -> ClusterView | None:
        return self._view

    async def start(self) -> None:
        if self._view is None and self.config.zookeeper.enabled:
            self._zk = await ZkClusterSource.open(self.config.zookeeper, comet_client_factory(self.config),
                                                  message_timeout=self.config.message.timeout,
                                                  retire_after=self.config.rpc.comet_timeout)
            self._view = self._zk.view
        elif self._view is None:
            self._view = build_view(self.config)
        tls_config = self.config.tls
        tls = server_context(tls_config.cert, tls_config.key) if tls_config.enabled else None
        self.tracer = make_tracer(self.config.trace, self._view)
        self._listen(make_public_app(self._view, self.config, self.tracer, self.stats), self.config.public.bind,
                     "public", tls if tls_config.public else None)
        admin_tls = tls if tls_config.admin else None
        tracer = self.tracer
        registry = web_registry(self.config.admin.bind[0] if self.config.admin.bind else "web", self.stats,
                                lambda: tracer.buffer.stats() if tracer is not None else None)
        retries = self.broadcast_retries = BroadcastRetries(self._view, self.config.broadcast,
                                                            self.config.rpc.comet_timeout)
        self.stats.sections["broadcast_retries"] = retries.stats
        self._listen(make_admin_app(self._view, self.config, self.tracer, self.stats, registry, retries),
                     self.config.admin.bind, "admin", admin_tls)
        if self.config.admin.token:
            log.info("admin: bearer token required")
            exposed = [bind for bind in self.config.admin.bind if not is_loopback(parse_address(bind)[0])]
            if exposed and admin_tls is None:
                log.warning("admin: listening on %s without TLS: the bearer token crosses the network in clear "
                            "unless a TLS proxy is in front (set [tls] cert and key)", exposed[0])

    async def stop(self) -> None:
        servers, self._servers = self._servers, []
        for server in servers:
            server.stop()
        apps, self._apps = self._apps, []
        grace = self.config.rpc.comet_timeout + 1.0   # a running push gets its comet's answer or its timeout
        await asyncio.gather(*(app.drain(grace) for app in apps))
        for server in servers:
            await server.close_all_connections()
        if self.broadcast_retries is not None:
            await self.broadcast_retries.close()   # pending retries are cancelled (logged with their mids)
        if self.tracer is not None:
            await self.tracer.buffer.close()
            self.tracer = None
        if self._zk is not None:
            zk, self._zk = self._zk, None
            await zk.stop()
        if self._own_view and self._view is not None:
            view, self._view = self._view, None
            await view.close()
        log.info("web node stopped")

    def _listen(self, app: Api, binds: list[str], what: str, tls: ssl.SSLContext | None) -> None:
        self._apps.append(app)
        limits = self.config.limits
        server = HTTPServer(app, max_body_size=limits.hard_body_cap, idle_connection_timeout=limits.idle_timeout,
                            body_timeout=limits.body_timeout, ssl_options=tls)
        self._servers.append(server)
        for bind in binds:
            host, port = parse_address(bind)
            server.listen(port, address=host)
            log.info("%s: listening on %s%s", what, bind, " (https)" if tls else "")
