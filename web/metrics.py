"""The web node's Prometheus metrics: ``GET /metrics`` on the admin listener (admin token when set, like /stat).

:class:`WebCollector` reads ``web.stats.WebStats`` (requests and refusals by listener) and the trace buffer at scrape
time; the node's RPC calls to comet and message nodes are timed by the RPC client itself
(``thirdparty.metrics.RPC_CALL_LATENCY``). A web node has no name: samples are labelled ``node`` with the first
admin bind address. Names and meanings: README.md, "Operations".
"""
from __future__ import annotations

from typing import Callable, ClassVar, Iterator

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.exposition import CONTENT_TYPE_LATEST
from prometheus_client.registry import Collector, CollectorRegistry

from thirdparty.metrics import RpcLatencyCollector, gauge, render, trace_families
from web.cluster import ClusterView
from web.config import LimitsConfig
from web.handlers import ApiRequest, Endpoint, Reply
from web.static_files import send
from web.stats import REFUSALS, WebStats

PREFIX = "pushcluster_web"


class WebCollector(Collector):
    """Requests and refusals by listener, the rate-limit table and the trace buffer of one web node."""

    def __init__(self, node: str, stats: WebStats, trace: Callable[[], dict[str, int] | None]) -> None:
        self.node = node
        self._stats = stats
        self._trace = trace

    def collect(self) -> Iterator[Metric]:
        node, stats = self.node, self._stats
        requests = CounterMetricFamily(f"{PREFIX}_requests", "HTTP requests received, by listener",
                                       labels=["node", "listener"])
        refusals = CounterMetricFamily(f"{PREFIX}_refusals", "Requests refused or failed, by listener and reason",
                                       labels=["node", "listener", "reason"])
        for listener, counters in sorted(stats.listeners.items()):
            requests.add_metric([node, listener], counters.requests)
            for reason in REFUSALS:
                refusals.add_metric([node, listener, reason], getattr(counters, reason))
        yield requests
        yield refusals
        rate_limit = GaugeMetricFamily(f"{PREFIX}_rate_limit", "The public rate limit's table (tracked addresses, "
                                       "requests not tracked because the table was full)", labels=["node", "what"])
        for what, read in sorted(stats.gauges.items()):
            rate_limit.add_metric([node, what], read())
        yield rate_limit
        yield gauge(f"{PREFIX}_start_time_seconds", "When the node started, Unix time", node, stats.started)
        yield from trace_families(PREFIX, node, self._trace())


def web_registry(node: str, stats: WebStats, trace: Callable[[], dict[str, int] | None]) -> CollectorRegistry:
    """A registry of its own for one web node: its counters and the process's RPC client latencies."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(WebCollector(node, stats, trace))
    registry.register(RpcLatencyCollector(node))
    return registry


class MetricsEndpoint(Endpoint):
    """GET /metrics (admin listener): the registry in the Prometheus text format, outside the JSON envelope."""

    admin: ClassVar[bool] = True

    def __init__(self, view: ClusterView, limits: LimitsConfig, registry: CollectorRegistry) -> None:
        super().__init__(view, limits)
        self.registry = registry

    def serve(self, request: ApiRequest) -> Reply:
        send(request, 200, {"Content-Type": CONTENT_TYPE_LATEST, "Cache-Control": "no-store"}, render(self.registry))
        return None
