"""``GET /cluster`` on the admin listener: the comet nodes this web node routes to, for the admin console.

The answer is the web's :class:`web.cluster.ClusterView` as it is now (static config or ZooKeeper): each comet's
name, ring weight, share of the ring (its weight over the total: ketama hands keys out in that proportion) and
its RPC / TCP / WebSocket addresses. It changes nothing, so it is a GET; it needs the admin token when one is set.
"""
from __future__ import annotations

from typing import Any, ClassVar

from web.handlers import ApiRequest, Endpoint, Reply
from web.ret import dumps


class ClusterEndpoint(Endpoint):
    """GET /cluster -> ``{"nodes": [{"name", "weight", "share", "rpc", "tcp", "ws"}, ...]}`` sorted by name."""

    method: ClassVar[str] = "GET"
    admin: ClassVar[bool] = True

    def serve(self, request: ApiRequest) -> Reply:
        infos = sorted((node.info for node in self.view.nodes.values()), key=lambda info: info.name)
        total = sum(info.weight for info in infos)
        nodes: list[dict[str, Any]] = [
            {"name": info.name, "weight": info.weight, "share": round(info.weight / total, 4) if total else 0.0,
             "rpc": list(info.rpc), "tcp": list(info.tcp), "ws": list(info.ws)}
            for info in infos]
        return dumps({"nodes": nodes}).encode("utf-8")
