"""Prometheus helpers every role shares: a cheap latency histogram, the RPC client's per-method histograms, the
trace-buffer families, and ``GET /metrics`` for tornado listeners.

:Status: used by ``comet/metrics.py``, ``web/metrics.py``, ``message/metrics.py`` and ``thirdparty/rpc_client.py``.

The roles keep their counters as plain integers (``comet.stat.CometStats``, ``web.stats.WebStats``, ...); the
collectors here and in the role modules read them at scrape time, so serving traffic costs nothing extra. Each node
has its own ``CollectorRegistry`` (several nodes share one process in standalone mode and in tests).

The one thing measured on the hot path is the RPC client's call latency: :class:`LatencyHistogram` is a list of
bucket counts, a sum and a ``bisect`` per observation (no lock, no label lookup: one event loop per process).
:data:`RPC_CALL_LATENCY` is process-wide, by method name: in standalone mode (several roles in one process) every
node shows the same histograms.
"""
from __future__ import annotations

import logging
from bisect import bisect_left
from typing import Iterable, Iterator

import tornado.web
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily, Metric
from prometheus_client.exposition import CONTENT_TYPE_LATEST, generate_latest
from prometheus_client.registry import Collector, CollectorRegistry

log = logging.getLogger(__name__)

# Seconds: a loopback call answers in ~0.1 ms, a Redis save in ~1 ms, a timeout is 1-3 s.
RPC_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0)
MAX_RPC_METHODS = 64  # histograms kept by method name; more (never in practice) are counted under "other"


class LatencyHistogram:
    """Counts of observations per bucket (``le`` bounds, +Inf last), their sum and count."""

    __slots__ = ("bounds", "counts", "total", "count")

    def __init__(self, bounds: Iterable[float] = RPC_BUCKETS) -> None:
        self.bounds = tuple(sorted(bounds))
        self.counts = [0] * (len(self.bounds) + 1)
        self.total = 0.0
        self.count = 0

    def observe(self, seconds: float) -> None:
        self.counts[bisect_left(self.bounds, seconds)] += 1
        self.total += seconds
        self.count += 1

    def cumulative(self) -> list[tuple[str, float]]:
        """``(le, observations <= le)`` pairs as Prometheus wants them, ``+Inf`` last."""
        buckets: list[tuple[str, float]] = []
        running = 0
        for bound, count in zip((*(repr(b) for b in self.bounds), "+Inf"), self.counts):
            running += count
            buckets.append((bound, running))
        return buckets


RPC_CALL_LATENCY: dict[str, LatencyHistogram] = {}


def rpc_latency(method: str) -> LatencyHistogram:
    """The process-wide call-latency histogram of RPC ``method`` (created on first use, bounded in number)."""
    histogram = RPC_CALL_LATENCY.get(method)
    if histogram is None:
        if len(RPC_CALL_LATENCY) >= MAX_RPC_METHODS:
            method = "other"
        histogram = RPC_CALL_LATENCY.setdefault(method, LatencyHistogram())
    return histogram


class RpcLatencyCollector(Collector):
    """``pushcluster_rpc_client_call_duration_seconds{node,method}``: the RPC calls this process made."""

    def __init__(self, node: str) -> None:
        self.node = node

    def collect(self) -> Iterator[Metric]:
        family = HistogramMetricFamily("pushcluster_rpc_client_call_duration_seconds",
                                       "MessagePack-RPC calls made by this process (answered, failed or timed out), "
                                       "by method", labels=["node", "method"])
        for method, histogram in sorted(RPC_CALL_LATENCY.items()):
            family.add_metric([self.node, method], histogram.cumulative(), histogram.total)
        yield family


def trace_families(prefix: str, node: str, stats: dict[str, int] | None) -> Iterator[Metric]:
    """The trace buffer's counters (``TraceBuffer.stats()``), or nothing when tracing is off."""
    if stats is None:
        return
    records = CounterMetricFamily(f"{prefix}_trace_records", "Trace records by outcome (added, sent, dropped)",
                                  labels=["node", "outcome"])
    for outcome in ("added", "sent", "dropped"):
        records.add_metric([node, outcome], stats[outcome])
    yield records
    pending = GaugeMetricFamily(f"{prefix}_trace_pending", "Trace records waiting to be sent", labels=["node"])
    pending.add_metric([node], stats["pending"])
    yield pending


def counter(name: str, doc: str, node: str, value: float) -> CounterMetricFamily:
    """A counter family with one sample labelled ``node`` (``name`` without ``_total``)."""
    family = CounterMetricFamily(name, doc, labels=["node"])
    family.add_metric([node], value)
    return family


def gauge(name: str, doc: str, node: str, value: float) -> GaugeMetricFamily:
    """A gauge family with one sample labelled ``node``."""
    family = GaugeMetricFamily(name, doc, labels=["node"])
    family.add_metric([node], value)
    return family


def labelled_counter(name: str, doc: str, node: str, label: str, values: dict[str, int]) -> CounterMetricFamily:
    """A counter family with one sample per ``values`` item, labelled ``node`` and ``label``."""
    family = CounterMetricFamily(name, doc, labels=["node", label])
    for value_label, value in sorted(values.items()):
        family.add_metric([node, value_label], value)
    return family


def render(registry: CollectorRegistry) -> bytes:
    """The registry in the Prometheus text format."""
    return generate_latest(registry)


class MetricsHandler(tornado.web.RequestHandler):
    """``GET /metrics``: ``registry`` in the Prometheus text format."""

    def initialize(self, registry: CollectorRegistry) -> None:
        self._registry = registry

    def get(self) -> None:
        try:
            body = render(self._registry)
        except Exception:  # noqa: BLE001 - a collector bug must not take the listener down
            log.error("%s: collecting metrics failed", self.request.path, exc_info=True)
            raise tornado.web.HTTPError(500) from None
        self.set_header("Content-Type", CONTENT_TYPE_LATEST)
        self.finish(body)


def metrics_route(registry: CollectorRegistry) -> tuple[str, type[MetricsHandler], dict[str, CollectorRegistry]]:
    """The ``/metrics`` route of a tornado ``Application``."""
    return (r"/metrics", MetricsHandler, {"registry": registry})


__all__ = ["CONTENT_TYPE_LATEST", "CollectorRegistry", "LatencyHistogram", "MetricsHandler", "RPC_CALL_LATENCY",
           "RpcLatencyCollector", "counter", "gauge", "labelled_counter", "metrics_route", "render", "rpc_latency",
           "trace_families"]
