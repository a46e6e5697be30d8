"""CometNode: the comet role's life cycle — bind the TCP, WebSocket, RPC and stat listeners, tick the deadlines,
stop gracefully.

The client listeners are the event loop's own servers (``loop.create_server``, comet/listeners.py) making one
``tcp.TcpConnection`` / ``websocket.WsConnection`` protocol object per client; the RPC and stat listeners are
tornado servers (the stat listener serves ``GET /stat`` and ``GET /metrics``, comet/metrics.py). ``stop()``
first stops accepting, lets RPC calls already running answer (pushes finish in order), drops the broadcasts still
queued (comet/broadcast.py), then closes every client connection (WebSocket clients get a 1001 close frame and a moment to answer it), then the message client it
created. Listeners bound to port 0 get a free port; :attr:`CometNode.addresses`
has the real ones.

Cluster mode (``[zookeeper] hosts`` set): once its listeners are bound the node follows ``<root>/message`` (its
message client is a MessagePool) and joins ``<root>/comet/<name>`` through ``comet.cluster.CometMembership``.
It serves the cluster's ring while it is its name's active comet and nothing while it is a standby (every key
gets ``-n`` / 1001); when the ring changes it closes the connections of the keys it no longer owns (the clients
reconnect through ``/server/get``), and when fenced it closes them all. ``stop()`` leaves the cluster first, so a
standby takes over while this node finishes its running pushes.

Security (docs/protocol.md): with ``[auth]`` secrets, subscribes need a token (``comet.auth.SubscribeAuth``,
whose secrets file is re-read when it changes); ``[limits]`` caps connections and new connections per second per
source address (``thirdparty.rate_limit.AddressLimiter``, swept by the same tick as the deadlines); with ``[tls]``
cert and key the client listeners speak TLS (the TLS handshake is bounded by the first-packet timeout).
"""
from __future__ import annotations

import asyncio
import logging
import time
from typing import Any, Callable

from tornado.httpserver import HTTPServer
from tornado.ioloop import PeriodicCallback

from comet.ack_waiters import AckWaiters
from comet.auth import SubscribeAuth
from comet.broadcast import Broadcaster
from comet.channel import ChannelTable
from comet.client import CometNodeInfo
from comet.cluster import CLOSE_FENCED, CLOSE_MOVED, CometMembership
from comet.config import CometConfig, advertised
from comet.connection import ClientConnection, ClientContext
from comet.heartbeat import Deadlines, TimerWheel
from comet.listeners import address_limiter, bind_server, serve_clients
from comet.metrics import comet_registry
from comet.protocol import SubscribeLimits
from comet.rpc import CometRPC
from comet.service import CometService, TokenCheck, accept_any_token
from comet.stat import CLOSE_ADDR_CONNS, CLOSE_ADDR_RATE, CLOSE_STOPPING, CometStats, make_stat_app
from comet.tcp import TcpConnection
from comet.tracing import CometTracer, make_tracer
from comet.websocket import WsConnection
from message.client import MessageAPI, MessageClient, MessagePool
from message.cluster import MessageDirectory
from thirdparty.ring import Ring
from thirdparty.rpc_server import RpcServer
from thirdparty.tls import server_context
from thirdparty.zk import ZkSession

log = logging.getLogger(__name__)

STOP_GRACE = 1.0  # seconds for running RPC calls, then for clients to finish their closing handshake
MAX_HTTP_BODY = 1024  # the stat listener takes GET requests only; never buffer a big body
STAT_IDLE_TIMEOUT = 30.0  # seconds a stat connection may stay idle or take to send its request
LEAVE_GRACE = 0.2  # seconds between leaving the cluster and closing the RPC listener: web nodes see the znode go
                   # within milliseconds and send the next pushes to the standby instead
LIMIT_LOG_INTERVAL = 60.0  # seconds between two log lines about connections refused by the address limits



class CometNode:
    """One comet node. ``message`` injects a MessageAPI (tests, standalone); else one is built from the config."""

    def __init__(self, config: CometConfig, message: MessageAPI | None = None, *,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.config = config
        self._injected_message = message
        self._clock = clock
        self.message: MessageAPI | None = None
        self.stats = CometStats(config.node.name)
        self.table = ChannelTable(config.limits.max_conns_per_key)
        self.service: CometService | None = None
        self.addresses: dict[str, list[str]] = {"tcp": [], "ws": [], "rpc": [], "stat": []}
        self._clients: ClientContext | None = None
        self.address_limiter = address_limiter(config)
        self.auth: SubscribeAuth | None = None
        self._limited_logged = (0, float("-inf"))  # (address refusals at the last log line, when)
        self._client_servers: list[asyncio.Server] = []
        self._rpc: RpcServer | None = None
        self._stat: HTTPServer | None = None
        self._ticker: PeriodicCallback | None = None
        self._zk: ZkSession | None = None
        self._membership: CometMembership | None = None
        self._directory: MessageDirectory | None = None
        self._cluster_ring: dict[str, int] = {}
        self._active = False
        self._leaving = False
        self.tracer: CometTracer | None = None
        self.waiters = AckWaiters(config.limits.max_ack_waits)
        self.broadcaster = Broadcaster(self.table, max_queued=config.broadcast.max_queued, chunk=config.broadcast.chunk,
                                       rate=config.broadcast.rate, max_message_bytes=config.limits.max_message_bytes)

    async def start(self) -> None:
        config, limits = self.config, self.config.limits
        cluster = config.zookeeper.enabled
        token_check: TokenCheck = accept_any_token
        if config.auth.enabled:
            token_check = self.auth = SubscribeAuth(config.auth, self.stats)
        tls = server_context(config.tls.cert, config.tls.key) if config.tls.enabled else None
        if self._injected_message is not None:
            self.message = self._injected_message
        elif cluster:
            self.message = MessagePool(timeout=config.message.timeout)
        else:
            self.message = MessageClient(config.message.rpc, timeout=config.message.timeout)
        self.tracer = make_tracer(config.node.name, config.trace, self.message)
        service = self.service = CometService(
            node_name=config.node.name, ring=Ring({} if cluster else config.ring_nodes()), table=self.table,
            message=self.message, stats=self.stats, max_key_bytes=limits.max_key_bytes,
            max_message_bytes=limits.max_message_bytes, max_keys_per_push=limits.max_keys_per_push,
            token_check=token_check, tracer=self.tracer, waiters=self.waiters)
        wheel: TimerWheel[Any] = TimerWheel(limits.timer_tick, self._clock())
        deadlines: Deadlines[Any] = Deadlines(wheel, self._clock, first_packet_timeout=limits.first_packet_timeout,
                                              heartbeat_grace=limits.heartbeat_grace)
        sub_limits = SubscribeLimits(max_arg_bytes=limits.max_arg_bytes, max_key_bytes=limits.max_key_bytes,
                                     min_heartbeat=limits.min_heartbeat, max_heartbeat=limits.max_heartbeat)
        clients = self._clients = ClientContext(service, deadlines, sub_limits, max_queue=limits.max_queue,
                                                max_ws_frame=limits.max_ws_frame, addresses=self.address_limiter,
                                                heartbeat_burst=limits.heartbeat_burst,
                                                max_acks_per_read=limits.max_acks_per_read)
        tcp_tls = tls if config.tls.tcp else None
        ws_tls = tls if config.tls.ws else None
        self.addresses["tcp"] = [await serve_clients(lambda: TcpConnection(clients), address, self._client_servers,
                                                      tls=tcp_tls, handshake_timeout=limits.first_packet_timeout)
                                 for address in config.bind.tcp]
        self.addresses["ws"] = [await serve_clients(lambda: WsConnection(clients), address, self._client_servers,
                                                     tls=ws_tls, handshake_timeout=limits.first_packet_timeout)
                                for address in config.bind.ws]
        self._rpc = RpcServer()
        self.broadcaster.start()
        self._rpc.register("CometRPC", CometRPC(service, self.stat, max_wait=limits.max_push_wait,
                                                broadcaster=self.broadcaster))
        self.addresses["rpc"] = [bind_server(self._rpc, config.bind.rpc)]
        if config.bind.stat:
            self._stat = HTTPServer(make_stat_app(self.stat, comet_registry(self)), idle_connection_timeout=STAT_IDLE_TIMEOUT,
                                    max_body_size=MAX_HTTP_BODY)
            self.addresses["stat"] = [bind_server(self._stat, config.bind.stat)]
        self._ticker = PeriodicCallback(lambda: self._tick(deadlines), limits.timer_tick * 1000)
        self._ticker.start()
        log.info("node=%s: comet serving tcp%s=%s ws%s=%s rpc=%s stat=%s; subscribe tokens %s", config.node.name,
                 "+tls" if tcp_tls else "", ",".join(self.addresses["tcp"]) or "-", "+tls" if ws_tls else "",
                 ",".join(self.addresses["ws"]) or "-", self.addresses["rpc"][0],
                 ",".join(self.addresses["stat"]) or "-",
                 f"required ({len(self.auth.secrets)} secret(s))" if self.auth else "off")
        if cluster:
            await self._join_cluster()

    async def _join_cluster(self) -> None:
        """Follow the message nodes, then register and follow the comets (serving nothing until active)."""
        zookeeper = self.config.zookeeper
        self._zk = ZkSession(zookeeper.hosts, session_timeout=zookeeper.session_timeout, root=zookeeper.root)
        await self._zk.start()
        if isinstance(self.message, MessagePool):
            self._directory = MessageDirectory(self._zk, self.message)
            await self._directory.start()
        self._membership = CometMembership(self._zk, self.info(), on_active=self._set_active,
                                           on_ring=self._set_ring, on_fenced=self._fenced)
        await self._membership.start()

    def _set_active(self, active: bool) -> None:
        self._active = active
        self._serve()

    def _set_ring(self, ring: dict[str, int]) -> None:
        self._cluster_ring = ring
        self._serve()

    def _serve(self) -> None:
        """Serve the cluster's ring while active, nothing otherwise; drop connections of keys no longer ours."""
        if self.service is None or self._leaving:
            return  # leaving: keep serving what is under way; stop() closes the RPC listener, then the clients
        self.service.ring = Ring(self._cluster_ring if self._active else {})
        moved = 0
        for key in self.table.keys():
            if not self.service.owns(key):
                moved += self.table.close_key(key, CLOSE_MOVED)
        if moved:
            log.info("node=%s: closed %d connection(s) of keys this node no longer serves", self.config.node.name,
                     moved)

    def _fenced(self, reason: str) -> None:
        closed = self.table.close_all(CLOSE_FENCED)
        log.warning("node=%s: fenced (%s): closed %d client connection(s)", self.config.node.name, reason, closed)

    def _tick(self, deadlines: Deadlines[Any]) -> None:
        try:
            expired = deadlines.expire()
            now = deadlines.clock()
            self.address_limiter.sweep(now)
            if self.auth is not None:
                self.auth.reload_if_changed(now)
            self._log_limited(now)
        except Exception:
            log.error("node=%s: deadline tick failed", self.config.node.name, exc_info=True)
            return
        if expired:
            log.debug("node=%s: %d connection(s) timed out", self.config.node.name, expired)

    def _log_limited(self, now: float) -> None:
        """One warning per LIMIT_LOG_INTERVAL when the address limits refused connections (never one per refusal:
        a flood would flood the log)."""
        refused = self.stats.closes[CLOSE_ADDR_CONNS] + self.stats.closes[CLOSE_ADDR_RATE]
        logged, when = self._limited_logged
        if refused > logged and now - when >= LIMIT_LOG_INTERVAL:
            self._limited_logged = (refused, now)
            log.warning("node=%s: %d connection(s) refused by the per-address limits since the last report "
                        "(%d by the cap, %d by the rate, in total)", self.config.node.name, refused - logged,
                        self.stats.closes[CLOSE_ADDR_CONNS], self.stats.closes[CLOSE_ADDR_RATE])

    def stat(self) -> dict[str, Any]:
        """The counters (``GET /stat`` and ``CometRPC.Stat``)."""
        cluster = (self._membership.state() if self._membership is not None
                   else {"mode": "zookeeper" if self.config.zookeeper.enabled else "static",
                         "role": "leaving" if self._leaving else "starting" if self.config.zookeeper.enabled
                         else "active"})
        trace = self.tracer.buffer.stats() if self.tracer is not None else {"enabled": False}
        return self.stats.snapshot({"keys": self.table.channel_count,
                                    "tracked_addresses": len(self.address_limiter), "cluster": cluster,
                                    "ack_waits": self.waiters.stats(), "trace": trace,
                                    "broadcast": self.broadcaster.stats()})

    def info(self) -> CometNodeInfo:
        """What this node publishes: its advertised addresses (bound ones when none are configured)."""
        advertise = self.config.advertise
        return CometNodeInfo(
            name=self.config.node.name, weight=self.config.node.weight,
            rpc=list(advertise.rpc) or [advertised(address) for address in self.addresses["rpc"]],
            tcp=list(advertise.tcp) or [advertised(address) for address in self.addresses["tcp"]],
            ws=list(advertise.ws) or [advertised(address) for address in self.addresses["ws"]])

    async def stop(self) -> None:
        name = self.config.node.name
        if self._membership is not None:
            self._leaving = True
            await self._membership.stop()   # leave first: the standby takes over while running pushes finish
            self._membership = None
            await asyncio.sleep(LEAVE_GRACE)
        if self._ticker is not None:
            self._ticker.stop()
            self._ticker = None
        for client_server in self._client_servers:
            client_server.close()
        if self._stat is not None:
            self._stat.stop()
        self.waiters.cancel_all()  # pushes waiting for an ack answer "timeout" now, within the RPC grace
        if self._rpc is not None:
            await self._rpc.close_all(STOP_GRACE)
            self._rpc = None
        await self.broadcaster.stop()  # what is still queued is dropped (counted): clients fetch it by pmid
        closed = self.table.close_all(CLOSE_STOPPING)
        if self._clients is not None:
            await self._close_sessions(self._clients.sessions)
        for client_server in self._client_servers:
            await client_server.wait_closed()
        self._client_servers = []
        if self._stat is not None:
            await self._stat.close_all_connections()
        self._clients = self._stat = None
        if self._directory is not None:
            await self._directory.stop()
            self._directory = None
        if self._zk is not None:
            await self._zk.stop()
            self._zk = None
        if self.tracer is not None:
            await self.tracer.buffer.close(STOP_GRACE)  # the closes above are traced too
        if self.message is not None and self._injected_message is None:
            await self.message.close()
        self.message = None
        log.info("node=%s: comet stopped, %d client connection(s) closed", name, closed)

    async def _close_sessions(self, sessions: set[ClientConnection]) -> None:
        """Close connections not yet subscribed too; abort those (WebSocket) that do not finish closing."""
        for conn in list(sessions):
            conn.close(CLOSE_STOPPING)
        deadline = time.monotonic() + STOP_GRACE
        while sessions and time.monotonic() < deadline:
            await asyncio.sleep(0.01)
        for conn in list(sessions):
            conn.abort()
        deadline = time.monotonic() + STOP_GRACE
        while sessions and time.monotonic() < deadline:
            await asyncio.sleep(0.01)  # aborted: connection_lost runs within a loop turn or two
        if sessions:
            log.error("node=%s: %d connection(s) did not finish closing", self.config.node.name, len(sessions))
