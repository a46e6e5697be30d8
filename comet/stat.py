"""Comet counters and the tiny HTTP listener that shows them: ``GET /stat`` -> JSON.

:class:`CometStats` is a bag of plain integers bumped on the hot paths (no locks: one event loop). The same
snapshot is returned by the ``CometRPC.Stat`` call. The node adds the blocks of its other parts (``keys``,
``cluster``, ``ack_waits``, ``trace``, and ``broadcast``: :meth:`comet.broadcast.Broadcaster.stats`). The
listener binds to localhost by default; given a registry it also serves ``GET /metrics``, the same counters for
Prometheus (comet/metrics.py).
"""
from __future__ import annotations

import json
import time
from collections import Counter
from typing import Any, Callable

from prometheus_client.registry import CollectorRegistry

import tornado.web

from thirdparty.metrics import metrics_route

# Why a connection closed (the keys of the "closes" counter).
CLOSE_CLIENT = "client closed"
CLOSE_FIRST_PACKET = "first packet timeout"
CLOSE_HEARTBEAT = "heartbeat timeout"
CLOSE_PROTOCOL = "protocol error"
CLOSE_OVERFLOW = "queue overflow"
CLOSE_RPC = "closed by rpc"
CLOSE_STOPPING = "node stopping"
CLOSE_REJECTED = "subscribe refused"
CLOSE_ADDR_CONNS = "too many connections from address"  # limits.max_conns_per_addr, refused at connect
CLOSE_ADDR_RATE = "connection rate from address"         # limits.conn_rate_per_addr, refused at connect
CLOSE_HEARTBEAT_FLOOD = "heartbeat flood"                # more than limits.heartbeat_burst in one read
CLOSE_ACK_FLOOD = "ack flood"                            # more than limits.max_acks_per_read in one read


class CometStats:
    """Counters of one comet node since it started."""

    def __init__(self, node: str, clock: Callable[[], float] = time.time) -> None:
        self.node = node
        self._clock = clock
        self.started = clock()
        self.connections: Counter[str] = Counter()   # open, subscribed connections by protocol
        self.subscribes: Counter[str] = Counter()    # successful subscribes by protocol
        self.refusals: Counter[str] = Counter()      # subscribe replies other than +h, by reply ("-p", ...)
        self.closes: Counter[str] = Counter()        # closed connections by reason
        self.tokens: Counter[str] = Counter()        # subscribe token checks by outcome ("ok", "expired", ...)
        self.pushes = 0             # PushPrivate calls that stored a message and were delivered
        self.multi_pushes = 0       # PushPrivates calls
        self.push_failures = 0      # keys whose push failed (message node unavailable or error)
        self.deliveries = 0         # messages written to a connection
        self.heartbeats = 0         # heartbeats answered
        self.acks = 0               # acks received (ack frames carrying a mid)
        self.acks_unknown = 0       # acks of a mid never written to that connection (ignored)

    def opened(self, protocol: str) -> None:
        self.subscribes[protocol] += 1
        self.connections[protocol] += 1

    def closed(self, protocol: str, reason: str, subscribed: bool) -> None:
        if subscribed:
            self.connections[protocol] -= 1
        self.closes[reason] += 1

    def snapshot(self, extra: dict[str, Any] | None = None) -> dict[str, Any]:
        """A JSON-ready copy of every counter."""
        data: dict[str, Any] = {
            "node": self.node,
            "uptime": round(self._clock() - self.started, 3),
            "connections": {"tcp": self.connections["tcp"], "ws": self.connections["ws"]},
            "subscribes": {"tcp": self.subscribes["tcp"], "ws": self.subscribes["ws"]},
            "refusals": dict(self.refusals),
            "closes": dict(self.closes),
            "queue_overflows": self.closes[CLOSE_OVERFLOW],
            "tokens": dict(self.tokens),
            "addr_limited": {"conns_per_addr": self.closes[CLOSE_ADDR_CONNS],
                             "conn_rate": self.closes[CLOSE_ADDR_RATE]},
            "pushes": self.pushes,
            "multi_pushes": self.multi_pushes,
            "push_failures": self.push_failures,
            "deliveries": self.deliveries,
            "heartbeats": self.heartbeats,
            "acks": {"received": self.acks, "unknown": self.acks_unknown},
        }
        if extra:
            data.update(extra)
        return data


class StatHandler(tornado.web.RequestHandler):
    """``GET /stat``: the node's counters as JSON."""

    def initialize(self, snapshot: Callable[[], dict[str, Any]]) -> None:
        self._snapshot = snapshot

    def get(self) -> None:
        self.set_header("Content-Type", "application/json;charset=utf-8")
        self.finish(json.dumps(self._snapshot(), ensure_ascii=False, sort_keys=True))


def make_stat_app(snapshot: Callable[[], dict[str, Any]],
                  registry: CollectorRegistry | None = None) -> tornado.web.Application:
    """The stat listener's routes: ``/stat``, and ``/metrics`` when a registry is given."""
    routes: list[Any] = [(r"/stat", StatHandler, {"snapshot": snapshot})]
    if registry is not None:
        routes.append(metrics_route(registry))
    return tornado.web.Application(routes)
