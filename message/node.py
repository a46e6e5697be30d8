"""MessageNode: the message role's life cycle — open the store (and the trace store), serve MessageRPC, stop
gracefully.

In cluster mode (``[zookeeper] hosts`` set) the node registers ``<root>/message/<id>`` once it listens, and on stop
deregisters first, so callers stop choosing it before it stops answering.

With ``[bind] metrics`` set the node also serves ``GET /metrics`` (Prometheus) there (message/metrics.py).
"""
from __future__ import annotations

import asyncio
import logging
import time
from typing import Callable

from tornado.httpserver import HTTPServer
from tornado.netutil import bind_sockets

from message.client import MessageNodeInfo
from message.cluster import register_message_node
from message.config import MessageConfig, StorageConfig
from message.directory import Directory, DirectoryLimits
from message.directory_redis import RedisDirectory
from message.directory_sqlite import SqliteDirectory, directory_file
from message.metrics import (CountingMessageRPC, MessageCollector, MessageCounters, message_registry,
                             metrics_server)
from message.redis_storage import RedisStorage
from message.sqlite_storage import SqliteStorage
from message.storage import Storage
from message.trace_redis import RedisTraceStore
from message.trace_service import MessageTracer
from message.trace_sqlite import SqliteTraceStore
from message.trace_store import TraceStore
from thirdparty.confload import parse_address
from thirdparty.rpc_server import RpcServer
from thirdparty.zk import Registration, ZkSession

log = logging.getLogger(__name__)

STOP_GRACE = 2.0  # seconds that calls already running get to answer when the node stops
LEAVE_GRACE = 0.2  # seconds a deregistered node goes on serving while the comet and web nodes' watches drop it


async def open_storage(config: StorageConfig, *, now_ns: Callable[[], int] = time.time_ns) -> Storage:
    """The store the config names: Redis shards (checked once, not required to be up) or a SQLite file."""
    if config.backend == "sqlite":
        return await SqliteStorage.open(config.sqlite_path, limits=config.limits(), now_ns=now_ns,
                                        sweep_interval=config.sqlite_sweep_interval)
    storage = RedisStorage(config.redis, weights=config.redis_weights, limits=config.limits(), now_ns=now_ns,
                           timeout=config.redis_timeout, max_connections=config.redis_max_connections)
    await storage.check_shards()
    return storage


async def open_directory(config: StorageConfig) -> Directory:
    """The tag/alias directory beside the message store: on the Redis shard the ring gives ``push:dir``, or in
    ``directory.db`` next to the SQLite file."""
    limits = DirectoryLimits(keys=config.limits())
    if config.backend == "sqlite":
        return await SqliteDirectory.open(directory_file(config.sqlite_path), limits=limits)
    return RedisDirectory(config.redis, weights=config.redis_weights, limits=limits, timeout=config.redis_timeout)


async def open_trace_store(config: MessageConfig) -> TraceStore:
    """The trace store beside the message store: the same Redis shards, or a SQLite file next to its file."""
    storage = config.storage
    if storage.backend == "sqlite":
        return await SqliteTraceStore.open(config.trace.sqlite_file(storage.sqlite_path), config.trace)
    return RedisTraceStore(storage.redis, config.trace, weights=storage.redis_weights, timeout=storage.redis_timeout)


class MessageNode:
    """One message node: a MessageRPC listener on ``config.rpc.bind`` in front of the configured store."""

    def __init__(self, config: MessageConfig, *, now_ns: Callable[[], int] = time.time_ns) -> None:
        self.config = config
        self._now_ns = now_ns
        self._storage: Storage | None = None
        self.directory: Directory | None = None   # tags and aliases (message/directory.py)
        self._server: RpcServer | None = None
        self._zk: ZkSession | None = None
        self._registration: Registration | None = None
        self.tracer: MessageTracer | None = None
        self.counters = MessageCounters()
        self._metrics: HTTPServer | None = None
        self.metrics_address = ""   # the [bind] metrics address actually bound (port 0 -> the port chosen)

    async def start(self) -> None:
        self._storage = await open_storage(self.config.storage, now_ns=self._now_ns)
        self.directory = await open_directory(self.config.storage)
        if self.config.trace.enabled:
            self.tracer = MessageTracer(await open_trace_store(self.config), self._storage, self.config.trace,
                                        self.config.storage.limits())
        self._server = RpcServer()
        self._server.register("MessageRPC", CountingMessageRPC(self._storage, counters=self.counters,
                                                               max_fetch_bytes=self.config.rpc.max_fetch_bytes,
                                                               tracer=self.tracer, directory=self.directory))
        host, port = parse_address(self.config.rpc.bind)
        self._server.listen(port, address=host)
        if self.config.bind.metrics:
            self._serve_metrics(self.config.bind.metrics)
        log.info("rpc=%s backend=%s: message node serving", self.config.rpc.bind, self.config.storage.backend)
        zookeeper = self.config.zookeeper
        if zookeeper.enabled:
            self._zk = ZkSession(zookeeper.hosts, session_timeout=zookeeper.session_timeout, root=zookeeper.root)
            await self._zk.start()
            info = MessageNodeInfo(rpc=self.config.rpc.advertised, weight=self.config.rpc.weight)
            self._registration = await register_message_node(self._zk, info)

    def _serve_metrics(self, address: str) -> None:
        tracer = self.tracer
        collector = MessageCollector(self.config.rpc.advertised, self.counters, time.time(),
                                     lambda: tracer.buffer.stats() if tracer is not None else None)
        self._metrics = metrics_server(message_registry(collector))
        host, port = parse_address(address)
        sockets = bind_sockets(port, address=host)
        self._metrics.add_sockets(sockets)
        bound_host, bound_port = sockets[0].getsockname()[:2]
        self.metrics_address = f"[{bound_host}]:{bound_port}" if ":" in bound_host else f"{bound_host}:{bound_port}"
        log.info("metrics=%s: serving GET /metrics", self.metrics_address)

    async def stop(self) -> None:
        """Deregister, stop listening, let running calls answer (up to STOP_GRACE s), close connections and store."""
        if self._registration is not None:
            await self._registration.cancel()
            self._registration = None
            await asyncio.sleep(LEAVE_GRACE)   # callers pick this node until their watch has followed: keep answering
        if self._metrics is not None:
            self._metrics.stop()
            await self._metrics.close_all_connections()
            self._metrics = None
        if self._server is not None:
            await self._server.close_all(STOP_GRACE)
            self._server = None
        if self._zk is not None:
            await self._zk.stop()
            self._zk = None
        if self.tracer is not None:
            await self.tracer.close()
            self.tracer = None
        if self.directory is not None:
            await self.directory.close()
            self.directory = None
        if self._storage is not None:
            await self._storage.close()
            self._storage = None
        log.info("rpc=%s: message node stopped", self.config.rpc.bind)
