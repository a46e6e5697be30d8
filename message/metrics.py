"""The message node's Prometheus metrics, and the small listener that serves them (``[bind] metrics``).

A message node keeps no counters of its own, so :class:`CountingMessageRPC` wraps the data methods of
``message.rpc.MessageRPC``: a call counts one integer, a failure one more (by kind: ``param`` for a refused argument,
``storage`` when the store — Redis — was unreachable or failed), a save the messages saved, a fetch the messages
returned. :class:`MessageCollector` reads them, and the trace buffer, at scrape time. Samples are labelled ``node``
with the node's advertised RPC address (a message node has no name). The listener is a tornado ``HTTPServer``
serving ``GET /metrics`` only, with the comet stat listener's idle timeout and body cap; it is off by default.
Names and meanings: README.md, "Operations".
"""
from __future__ import annotations

from collections import Counter
from typing import Any, Awaitable, Callable, Iterator, TypeVar

import tornado.web
from prometheus_client.core import CounterMetricFamily, Metric
from prometheus_client.registry import Collector, CollectorRegistry
from tornado.httpserver import HTTPServer

from message.rpc import MessageRPC
from thirdparty.metrics import counter, gauge, metrics_route, trace_families
from thirdparty.rpc_codec import ERR_INTERNAL, RpcError

T = TypeVar("T")
PREFIX = "pushcluster_message"
COUNTED = ("SavePrivate", "SavePrivates", "GetPrivate", "DelPrivate", "SavePublic", "GetPublic")
IDLE_TIMEOUT = 30.0  # seconds a metrics connection may stay idle or take to send its request
MAX_HTTP_BODY = 1024  # GET requests only: never buffer a big body


class MessageCounters:
    """What the node's MessageRPC did since it started (plain integers: one event loop)."""

    def __init__(self) -> None:
        self.calls: Counter[str] = Counter()                  # data calls by method
        self.failures: Counter[tuple[str, str]] = Counter()   # (method, "param" | "storage")
        self.saved = 0      # messages saved (one per key of SavePrivates; one per SavePublic)
        self.fetched = 0    # messages returned by GetPrivate (offline fetches)
        self.unsaved = 0    # keys SavePrivates could not save (their store shard failed)


class CountingMessageRPC(MessageRPC):
    """``MessageRPC`` counting its data calls into ``counters``; the RPC surface is unchanged."""

    def __init__(self, *args: Any, counters: MessageCounters, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.counters = counters

    async def _counted(self, method: str, call: Awaitable[T]) -> T:
        self.counters.calls[method] += 1
        try:
            return await call
        except RpcError as exc:
            self.counters.failures[method, "storage" if exc.code == ERR_INTERNAL else "param"] += 1
            raise

    async def SavePrivate(self, key: Any, msg: Any, expire: Any) -> int:
        mid = await self._counted("SavePrivate", super().SavePrivate(key, msg, expire))
        self.counters.saved += 1
        return mid

    async def SavePrivates(self, keys: Any, msg: Any, expire: Any) -> dict[str, int]:
        saved = await self._counted("SavePrivates", super().SavePrivates(keys, msg, expire))
        self.counters.saved += len(saved)
        unsaved = len(set(keys)) - len(saved)   # keys of a shard that failed (a list: checked by the store)
        if unsaved > 0:
            self.counters.unsaved += unsaved
        return saved

    async def GetPrivate(self, key: Any, mid: Any) -> dict[str, Any]:
        reply = await self._counted("GetPrivate", super().GetPrivate(key, mid))
        self.counters.fetched += len(reply["msgs"])
        return reply

    async def DelPrivate(self, key: Any) -> int:
        return await self._counted("DelPrivate", super().DelPrivate(key))

    async def SavePublic(self, msg: Any, expire: Any) -> int:
        mid = await self._counted("SavePublic", super().SavePublic(msg, expire))
        self.counters.saved += 1
        return mid

    async def GetPublic(self, mid: Any) -> dict[str, Any]:
        return await self._counted("GetPublic", super().GetPublic(mid))


class MessageCollector(Collector):
    """Calls, failures, saved and fetched messages, and the trace buffer of one message node."""

    def __init__(self, node: str, counters: MessageCounters, started: float,
                 trace: Callable[[], dict[str, int] | None]) -> None:
        self.node = node
        self._counters = counters
        self._started = started
        self._trace = trace

    def collect(self) -> Iterator[Metric]:
        node, counters = self.node, self._counters
        calls = CounterMetricFamily(f"{PREFIX}_rpc_calls", "MessageRPC data calls received, by method",
                                    labels=["node", "method"])
        failures = CounterMetricFamily(f"{PREFIX}_rpc_failures", "MessageRPC data calls failed, by method and kind "
                                       "(param: refused argument; storage: the store was unreachable or failed)",
                                       labels=["node", "method", "kind"])
        for method in COUNTED:
            calls.add_metric([node, method], counters.calls[method])
            for kind in ("param", "storage"):
                failures.add_metric([node, method, kind], counters.failures[method, kind])
        yield calls
        yield failures
        storage_errors = sum(count for (_, kind), count in counters.failures.items() if kind == "storage")
        yield counter(f"{PREFIX}_storage_errors", "Store (Redis) failures: calls failed with 'storage unavailable', "
                      "plus keys SavePrivates could not save", node, storage_errors + counters.unsaved)
        yield counter(f"{PREFIX}_saved_messages", "Messages saved (one per key)", node, counters.saved)
        yield counter(f"{PREFIX}_fetches", "Offline fetches (GetPrivate calls)", node, counters.calls["GetPrivate"])
        yield counter(f"{PREFIX}_fetched_messages", "Messages returned by offline fetches", node, counters.fetched)
        yield gauge(f"{PREFIX}_start_time_seconds", "When the node started, Unix time", node, self._started)
        yield from trace_families(PREFIX, node, self._trace())


def message_registry(collector: MessageCollector) -> CollectorRegistry:
    """A registry of its own for one message node."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(collector)
    return registry


def metrics_server(registry: CollectorRegistry) -> HTTPServer:
    """The ``[bind] metrics`` listener: ``GET /metrics`` only (anything else is a 404)."""
    return HTTPServer(tornado.web.Application([metrics_route(registry)]), idle_connection_timeout=IDLE_TIMEOUT,
                      max_body_size=MAX_HTTP_BODY)
