"""The comet node's Prometheus metrics: ``GET /metrics`` on the stat listener, next to ``GET /stat``.

:class:`CometCollector` reads the node's counters at scrape time (``comet.stat.CometStats``, the channel table,
the ack waiters, the broadcaster, the trace buffer), so the hot paths do nothing more than they did for ``/stat``. Every sample is
labelled ``node`` (the comet's name). Names and meanings: README.md, "Operations".
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Iterator

from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector, CollectorRegistry

from comet.stat import CLOSE_OVERFLOW
from thirdparty.metrics import RpcLatencyCollector, counter, gauge, labelled_counter, trace_families

if TYPE_CHECKING:
    from comet.node import CometNode

PREFIX = "pushcluster_comet"
PROTOCOLS = ("tcp", "ws")


class CometCollector(Collector):
    """Every comet counter of one node, read when scraped."""

    def __init__(self, node: CometNode) -> None:
        self._node = node

    def collect(self) -> Iterator[Metric]:
        node = self._node
        stats, name = node.stats, node.stats.node
        connections = GaugeMetricFamily(f"{PREFIX}_connections", "Open subscribed client connections",
                                        labels=["node", "protocol"])
        for protocol in PROTOCOLS:
            connections.add_metric([name, protocol], stats.connections[protocol])
        yield connections
        yield labelled_counter(f"{PREFIX}_subscribes", "Successful subscribes", name, "protocol",
                               {protocol: stats.subscribes[protocol] for protocol in PROTOCOLS})
        yield labelled_counter(f"{PREFIX}_refusals", "Subscribes refused, by reply (-p, -a, -c, -n)", name, "reply",
                               dict(stats.refusals))
        yield labelled_counter(f"{PREFIX}_closes", "Closed client connections, by reason", name, "reason",
                               dict(stats.closes))
        yield counter(f"{PREFIX}_queue_overflows", "Connections dropped because max_queue messages were unsent",
                      name, stats.closes[CLOSE_OVERFLOW])
        yield labelled_counter(f"{PREFIX}_token_checks", "Subscribe token checks, by outcome", name, "outcome",
                               dict(stats.tokens))
        yield counter(f"{PREFIX}_pushes", "PushPrivate calls stored and delivered", name, stats.pushes)
        yield counter(f"{PREFIX}_multi_pushes", "PushPrivates calls", name, stats.multi_pushes)
        yield counter(f"{PREFIX}_push_failures", "Keys whose push failed (message node unavailable or error)", name,
                      stats.push_failures)
        yield counter(f"{PREFIX}_deliveries", "Messages written to a client connection", name, stats.deliveries)
        yield counter(f"{PREFIX}_heartbeats", "Heartbeats answered", name, stats.heartbeats)
        yield labelled_counter(f"{PREFIX}_acks", "Acks received, by outcome (received, unknown mid)", name,
                               "outcome", {"received": stats.acks, "unknown": stats.acks_unknown})
        waits = node.waiters.stats()
        yield labelled_counter(f"{PREFIX}_ack_waits", "Pushes that waited for an ack, by outcome", name, "outcome",
                               {outcome: waits[outcome] for outcome in ("acked", "timeouts", "refused")})
        yield gauge(f"{PREFIX}_ack_waiting", "Pushes waiting for an ack now", name, waits["waiting"])
        broadcast = node.broadcaster.stats()
        yield labelled_counter(f"{PREFIX}_broadcasts", "Broadcasts (PushPublic), by outcome (queued, done, refused: "
                               "queue full, dropped: node stopped)", name, "outcome",
                               {outcome: broadcast[outcome] for outcome in ("queued", "done", "refused", "dropped")})
        yield labelled_counter(f"{PREFIX}_broadcast_connections", "Connections of broadcast snapshots, by outcome "
                               "(written, skipped: closed since or overflowed)", name, "outcome",
                               {outcome: broadcast[outcome] for outcome in ("written", "skipped")})
        yield gauge(f"{PREFIX}_broadcasts_pending", "Broadcasts queued now, the one being written included", name,
                    broadcast["pending"])
        yield gauge(f"{PREFIX}_keys", "Keys with at least one subscribed connection", name, node.table.channel_count)
        yield gauge(f"{PREFIX}_tracked_addresses", "Source addresses tracked by the per-address limits", name,
                    len(node.address_limiter))
        yield gauge(f"{PREFIX}_start_time_seconds", "When the node started, Unix time", name, stats.started)
        yield from trace_families(PREFIX, name, node.tracer.buffer.stats() if node.tracer is not None else None)


def comet_registry(node: CometNode) -> CollectorRegistry:
    """A registry of its own for ``node``: its counters and the process's RPC client latencies."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(CometCollector(node))
    registry.register(RpcLatencyCollector(node.stats.node))
    return registry
