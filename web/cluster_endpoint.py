"""``GET /cluster`` on the admin listener: the comet nodes this web node routes to, for the admin console.

The answer is the web's :class:`web.cluster.ClusterView` as it is now (static config or ZooKeeper): each comet's
name, ring weight, share of the ring (its weight over the total: ketama hands keys out in that proportion) and
its RPC / TCP / WebSocket addresses, and what the comet itself says (``CometRPC.Stat``, asked of every comet at
once, each bounded by ``STAT_TIMEOUT``): its role in the cluster (active, standby, ...), open connections, pushes
and deliveries so far, uptime, its broadcast counters (``queued``, ``pending``, ``done``, ``refused``, ``dropped``
of its ``/stat`` ``"broadcast"`` block, :meth:`comet.broadcast.Broadcaster.stats`; null from a comet without one) —
or ``"stat": null`` with the reason when it does not answer. It changes nothing, so it is a GET; it needs the
admin token when one is set.
"""
from __future__ import annotations

import asyncio
import logging
from typing import Any, ClassVar

from web.cluster import CometNode

from web.handlers import ApiRequest, Endpoint, Reply
from web.ret import dumps

log = logging.getLogger(__name__)

STAT_TIMEOUT = 1.0  # seconds a comet gets to answer CometRPC.Stat for the console
BROADCAST_COUNTERS = ("queued", "pending", "done", "refused", "dropped")  # of the comet's stat "broadcast" block


class ClusterEndpoint(Endpoint):
    """GET /cluster -> ``{"nodes": [{"name", "weight", "share", "rpc", "tcp", "ws"}, ...]}`` sorted by name."""

    method: ClassVar[str] = "GET"
    admin: ClassVar[bool] = True

    async def serve(self, request: ApiRequest) -> Reply:
        comets = sorted(self.view.nodes.values(), key=lambda node: node.info.name)
        total = sum(node.info.weight for node in comets)
        stats = await asyncio.gather(*(_stat_of(node) for node in comets))
        nodes: list[dict[str, Any]] = [
            {"name": node.info.name, "weight": node.info.weight,
             "share": round(node.info.weight / total, 4) if total else 0.0,
             "rpc": list(node.info.rpc), "tcp": list(node.info.tcp), "ws": list(node.info.ws), **stat}
            for node, stat in zip(comets, stats)]
        return dumps({"nodes": nodes}).encode("utf-8")


async def _stat_of(node: CometNode) -> dict[str, Any]:
    """The console's summary of one comet's own counters, or why there is none."""
    client = node.client()
    if client is None:
        return {"stat": None, "stat_error": "no RPC address"}
    try:
        stat = await asyncio.wait_for(client.stat(), STAT_TIMEOUT)
    except Exception as exc:  # noqa: BLE001 - any failure is shown on the page, the others still answer
        log.info("node=%s: no stat for the console: %s", node.info.name, exc)
        return {"stat": None, "stat_error": type(exc).__name__}
    connections = stat.get("connections", {})
    return {"stat": {"role": stat.get("cluster", {}).get("role", ""), "uptime": stat.get("uptime", 0),
                     "connections": sum(v for v in connections.values() if isinstance(v, int)),
                     "pushes": stat.get("pushes", 0), "deliveries": stat.get("deliveries", 0),
                     "broadcast": _broadcast_counters(stat.get("broadcast"))},
            "stat_error": ""}


def _broadcast_counters(block: Any) -> dict[str, int] | None:
    """The console's broadcast counters of a comet's stat block, or None when the comet has no such block."""
    if not isinstance(block, dict):
        return None
    return {name: value if isinstance(value := block.get(name), int) else 0 for name in BROADCAST_COUNTERS}
