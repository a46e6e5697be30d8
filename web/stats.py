"""Web node counters and ``GET /stat`` on the admin listener: requests by listener, refusals by reason, uptime.

Each listener (``web.app.Api``) bumps its own :class:`ListenerStats`, plain integer attributes (no lock: one event
loop), where the request layer decides: the rate limit, the bearer token, the route, the ret of an error, a body
refused unread. :class:`StatEndpoint` answers with the envelope ``{"ret":0,"msg":"ok","data":{...}}``.
"""
from __future__ import annotations

import time
from typing import Any, Callable, ClassVar

from web.cluster import ClusterView
from web.config import LimitsConfig
from web.handlers import ApiRequest, Endpoint, Reply
from web.ret import dumps

# The refusals of ListenerStats, by the name /stat shows them under.
REFUSALS = ("rate_limited", "unauthorized", "body_too_large", "not_found", "method_not_allowed", "param_error",
            "no_node", "internal_error", "http_500")


class ListenerStats:
    """Counters of one listener since the node started."""

    __slots__ = ("requests", *REFUSALS)

    def __init__(self) -> None:
        self.requests = 0          # every request received (including the ones refused below)
        self.rate_limited = 0      # HTTP 429: the source address's request rate (public listener)
        self.unauthorized = 0      # HTTP 401: missing or wrong admin bearer token
        self.body_too_large = 0    # HTTP 400: Content-Length above twice limits.max_body_bytes, refused unread
        self.not_found = 0         # HTTP 404: unknown path
        self.method_not_allowed = 0  # HTTP 405
        self.param_error = 0       # ret 65534 with HTTP 200 (bad parameter or body, bad JSONP callback)
        self.no_node = 0           # ret 1001
        self.internal_error = 0    # ret 65535 with HTTP 200: a comet or message node unreachable or failing
        self.http_500 = 0          # HTTP 500: a fault of the web node itself (logged with its traceback)

    def snapshot(self) -> dict[str, Any]:
        return {"requests": self.requests, "refusals": {name: getattr(self, name) for name in REFUSALS}}


class WebStats:
    """Every listener's counters, and the node's start time."""

    def __init__(self, clock: Callable[[], float] = time.time) -> None:
        self._clock = clock
        self.started = clock()
        self.listeners: dict[str, ListenerStats] = {}
        self.gauges: dict[str, Callable[[], int]] = {}  # extra values read at snapshot time (rate-limit table)
        self.sections: dict[str, Callable[[], dict[str, int]]] = {}  # more blocks read at snapshot time, by name

    def listener(self, name: str) -> ListenerStats:
        """The counters of listener ``name`` ("public", "admin"), created on first use."""
        return self.listeners.setdefault(name, ListenerStats())

    def snapshot(self) -> dict[str, Any]:
        """A JSON-ready copy of every counter."""
        data: dict[str, Any] = {"uptime": round(self._clock() - self.started, 3)}
        data.update((name, stats.snapshot()) for name, stats in self.listeners.items())
        data["rate_limit"] = {name: gauge() for name, gauge in self.gauges.items()}
        data.update((name, section()) for name, section in self.sections.items())   # "broadcast_retries"
        return data


class StatEndpoint(Endpoint):
    """GET /stat (admin listener): :meth:`WebStats.snapshot` in the envelope's ``data``."""

    admin: ClassVar[bool] = True

    def __init__(self, view: ClusterView, limits: LimitsConfig, stats: WebStats) -> None:
        super().__init__(view, limits)
        self.stats = stats

    def serve(self, request: ApiRequest) -> Reply:
        return dumps(self.stats.snapshot()).encode("utf-8")
