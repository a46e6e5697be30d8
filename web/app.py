"""Route tables of the two web listeners, request dispatch, and their access loggers.

``make_public_app`` serves clients (GET, JSONP-capable); ``make_admin_app`` serves back ends (POST,
token-protected when configured). Each is an :class:`Api`: a tornado ``Application`` (what ``HTTPServer``
takes) that hands every request to a lean :class:`web.handlers.ApiRequest` and routes it by exact path to its
:class:`web.handlers.Endpoint`, without tornado's ``RequestHandler`` (see web/handlers.py for why). Unknown paths
get HTTP 404 and a JSON envelope, a method the path does not take HTTP 405, never tornado's HTML.
Each listener logs one line per request to ``web.access.public`` / ``web.access.admin`` (children of
``web.access``): 2xx/3xx at INFO, 4xx at WARNING, 5xx at ERROR, and counts requests and refusals
(web/stats.py, ``GET /stat`` and ``GET /metrics`` on the admin listener). The public listener limits the request
rate of each source address (``[limits] public_rate_per_addr``): past it, HTTP 429 with ``Retry-After`` and a
plain-JSON envelope.
"""
from __future__ import annotations

import asyncio
import logging
import math
import time
from typing import Any, Awaitable

import tornado.web
from prometheus_client.registry import CollectorRegistry
from tornado import httputil

from web.admin import DelPrivateEndpoint, PushMultiEndpoint, PushPrivateEndpoint, token_matches
from web.broadcast import PushAllEndpoint
from web.broadcast_retry import BroadcastRetries
from web.cluster import ClusterView
from web.cluster_endpoint import ClusterEndpoint
from thirdparty.rate_limit import RequestLimiter, parse_networks
from web.config import LimitsConfig, WebConfig
from web.directory_endpoints import targeting_endpoints
from web.fetch_endpoint import MsgEndpoint
from web.handlers import (LEGACY, SUPPORTED_METHODS, V1, ApiRequest, Endpoint, Reply, ServerEndpoint, TimeEndpoint,
                          check_request_callback)
from web.metrics import MetricsEndpoint
from web.ret import InternalError, NoNodeError, ParamError, Ret, RetError
from web.static_files import static_endpoints
from web.stats import ListenerStats, StatEndpoint, WebStats
from web.trace_handlers import KeyTraceEndpoint, MsgTraceEndpoint
from web.tracing import WebTracer

log = logging.getLogger(__name__)

LIMITED_LOG_INTERVAL = 10.0   # seconds: at most one access-log line for rate-limited (429) requests per interval
AUTHENTICATE = {"WWW-Authenticate": 'Bearer realm="pushcluster-admin"'}


class Api(tornado.web.Application):
    """One listener's endpoints by path; every request becomes an :class:`ApiRequest` dispatched here."""

    def __init__(self, endpoints: dict[str, Endpoint], access_logger: str, token: str = "", *,
                 stats: ListenerStats | None = None, limiter: RequestLimiter | None = None,
                 body_cap: int = 0) -> None:
        super().__init__()
        self.endpoints = endpoints
        self.token = token
        self.stats = stats if stats is not None else ListenerStats()
        self.limiter = limiter if limiter is not None and limiter.enabled else None
        self.body_cap = body_cap  # the HTTP server's max_body_size: a larger Content-Length is refused unread
        self.access_log = logging.getLogger(access_logger)
        self._running: set[asyncio.Task[None]] = set()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._limited_logged = -LIMITED_LOG_INTERVAL   # when the last 429 was logged (monotonic seconds)
        self._limited_quiet = 0                        # 429s since then, counted but not logged

    def start_request(self, server_conn: object,
                      request_conn: httputil.HTTPConnection) -> httputil.HTTPMessageDelegate:
        return ApiRequest(self, request_conn)

    def dispatch(self, request: ApiRequest) -> None:
        """Route a fully received request: 404 / 405 / 401 as tornado's RequestHandler would, else the endpoint."""
        stats = self.stats
        stats.requests += 1
        if self.limiter is not None and not self._admitted(request):
            return
        endpoint = self.endpoints.get(request.path)
        method = request.method
        if method not in SUPPORTED_METHODS:
            stats.method_not_allowed += 1
            request.reply_http_error(405, "method not allowed")
            return
        if endpoint is None:
            stats.not_found += 1
            request.reply_http_error(404, "not found")
            return
        if endpoint.admin and self.token and not self._authorized(request):
            return
        if method != endpoint.method:
            stats.method_not_allowed += 1
            request.reply_http_error(405, "method not allowed")
            return
        self.answer(request, endpoint)

    def _admitted(self, request: ApiRequest) -> bool:
        assert self.limiter is not None
        wait = self.limiter.admit(request.remote_ip, request.started)
        if not wait:
            return True
        self.stats.rate_limited += 1
        request.reply_http_error(429, "too many requests", {"Retry-After": str(max(1, math.ceil(wait)))})
        return False

    def connection_closed(self, request: ApiRequest) -> None:
        """The connection of a request not answered yet closed: count a body the HTTP server refused unread."""
        try:
            length = int(request.headers.get("Content-Length", "0"))
        except ValueError:
            return
        if self.body_cap and length > self.body_cap:
            self.stats.requests += 1
            self.stats.body_too_large += 1

    def _authorized(self, request: ApiRequest) -> bool:
        if token_matches(request.headers.get("Authorization", ""), self.token):
            return True
        log.warning("%s: admin request from %s refused: missing or wrong bearer token", request.path,
                    request.remote_ip)
        self.stats.unauthorized += 1
        request.reply_http_error(401, "unauthorized", AUTHENTICATE)
        return False

    def answer(self, request: ApiRequest, endpoint: Endpoint) -> None:
        """Run ``endpoint`` and reply; an endpoint that returns an awaitable replies from a task when it is done."""
        try:
            callback = check_request_callback(endpoint, request)
        except ParamError as exc:  # an invalid callback name is answered in plain JSON and never echoed
            self.fail(request, exc)
            return
        try:
            result = endpoint.serve(request)
        except RetError as exc:
            self.fail(request, exc, callback)
            return
        except Exception:  # noqa: BLE001 - a bug: a 500 envelope and the traceback in the log
            self.crashed(request)
            return
        if result is None or isinstance(result, bytes):
            request.reply(Ret.OK, result, callback)
            return
        loop = self._loop or asyncio.get_running_loop()  # one lookup: it costs a getpid() each time
        self._loop = loop
        task = loop.create_task(_answer_later(self, request, result, callback))
        self._running.add(task)
        task.add_done_callback(self._running.discard)

    def fail(self, request: ApiRequest, exc: RetError, callback: str | None = None) -> None:
        """Count the error by its ret, and answer with it."""
        stats = self.stats
        if isinstance(exc, ParamError):
            stats.param_error += 1
        elif isinstance(exc, NoNodeError):
            stats.no_node += 1
        elif isinstance(exc, InternalError):
            stats.internal_error += 1
        request.fail(exc, callback)

    def crashed(self, request: ApiRequest) -> None:
        """A bug: a 500 envelope and the traceback in the log."""
        self.stats.http_500 += 1
        log.error("%s %s: internal error", request.method, request.path, exc_info=True)
        request.reply_http_error(500, "internal error")

    async def drain(self, grace: float) -> None:
        """Wait up to ``grace`` seconds for the requests still being answered (the node is stopping)."""
        if self._running:
            await asyncio.wait(list(self._running), timeout=grace)

    def log_access(self, request: ApiRequest) -> None:
        """One access-log line: method, path, HTTP status, ret, duration and peer."""
        status = request.status
        level = logging.INFO if status < 400 else logging.WARNING if status < 500 else logging.ERROR
        logger = self.access_log
        if not logger.isEnabledFor(level):
            return
        more = ""
        if status == 429:  # a flood is one line per LIMITED_LOG_INTERVAL, not one per request (counted in /stat)
            now = time.monotonic()
            if now - self._limited_logged < LIMITED_LOG_INTERVAL:
                self._limited_quiet += 1
                return
            if self._limited_quiet:
                more = f" (+{self._limited_quiet} more 429 in the last {now - self._limited_logged:.0f}s, not logged)"
            self._limited_logged, self._limited_quiet = now, 0
        ret = request.ret
        logger.log(level, "%s %s %d ret=%s %.1fms %s%s", request.method, request.path, status,
                   "-" if ret is None else int(ret), 1000.0 * request.request_time(), request.remote_ip, more)


async def _answer_later(api: Api, request: ApiRequest, result: Awaitable[Reply], callback: str | None) -> None:
    try:
        data = await result
    except RetError as exc:
        api.fail(request, exc, callback)
    except Exception:  # noqa: BLE001 - a bug: a 500 envelope and the traceback in the log
        api.crashed(request)
    else:
        request.reply(Ret.OK, data, callback)


def public_limiter(limits: LimitsConfig) -> RequestLimiter:
    """The public listener's per-address request rate limit (disabled when the rate is 0)."""
    rate = limits.public_rate_per_addr
    return RequestLimiter(rate=rate, burst=limits.public_burst_per_addr if rate else 0,
                          exempt=parse_networks(limits.rate_limit_exempt), max_tracked=limits.public_rate_max_addrs)


def make_public_app(view: ClusterView, config: WebConfig, tracer: WebTracer | None = None,
                    stats: WebStats | None = None) -> Api:
    """The client-facing API (DESIGN.md section 2); ``tracer`` traces the messages each fetch returns, ``stats``
    gets its counters (under "public") and the size of its rate-limit table."""
    common: dict[str, Any] = {"view": view, "limits": config.limits}
    fetches = (MsgEndpoint(**common, names=LEGACY, legacy=True), MsgEndpoint(**common, names=V1, legacy=False))
    if tracer is not None:
        for fetch in fetches:
            fetch.on_fetch = tracer.fetched
    endpoints: dict[str, Endpoint] = {
        "/server/get": ServerEndpoint(**common, names=LEGACY),
        "/1/server/get": ServerEndpoint(**common, names=V1),
        "/2/server/get": ServerEndpoint(**common, names=V1, all_addresses=True),
        "/msg/get": fetches[0],
        "/1/msg/get": fetches[1],
        "/time/get": TimeEndpoint(**common, names=LEGACY),
        "/1/time/get": TimeEndpoint(**common, names=V1),
        **static_endpoints(**common),   # /static/pushcluster.js, /demo/: the browser client
    }
    stats = stats if stats is not None else WebStats()
    limiter = public_limiter(config.limits)
    stats.gauges["tracked_addresses"] = lambda: len(limiter)
    stats.gauges["untracked_requests"] = lambda: limiter.untracked
    return Api(endpoints, "web.access.public", stats=stats.listener("public"), limiter=limiter,
               body_cap=config.limits.hard_body_cap)


def make_admin_app(view: ClusterView, config: WebConfig, tracer: WebTracer | None = None,
                   stats: WebStats | None = None, registry: CollectorRegistry | None = None,
                   broadcast_retries: BroadcastRetries | None = None) -> Api:
    """The back-end API (DESIGN.md section 3), with the trace queries and ``GET /stat`` (``stats``: the node's
    counters, this listener's under "admin"), and ``GET /metrics`` when a ``registry`` is given (web/metrics.py);
    ``tracer`` traces failed pushes; ``broadcast_retries`` retries the comets a /push/all failed (None: no retry).
    Not rate limited."""
    stats = stats if stats is not None else WebStats()
    endpoints: dict[str, Endpoint] = {}
    private, multi = PushPrivateEndpoint(view, config.limits), PushMultiEndpoint(view, config.limits)
    for push in (private, multi):
        push.tracer = tracer
        push.rpc_timeout = config.rpc.comet_timeout
    for paths, endpoint in (
        (("/push/private", "/1/admin/push/private", "/admin/push"), private),
        (("/push/mprivate", "/1/admin/push/mprivate"), multi),
        (("/msg/del", "/1/admin/msg/del", "/admin/msg/clean"), DelPrivateEndpoint(view, config.limits)),
        (("/msg/trace",), MsgTraceEndpoint(view, config.limits)),
        (("/key/trace",), KeyTraceEndpoint(view, config.limits)),
    ):
        endpoints.update((path, endpoint) for path in paths)
    endpoints["/push/all"] = push_all = PushAllEndpoint(view, config.limits, config.rpc.comet_timeout)  # broadcast
    push_all.retries = broadcast_retries
    endpoints.update(targeting_endpoints(view, config, tracer))   # tags and aliases: /push/tags, /key/info, ...
    endpoints["/stat"] = StatEndpoint(view, config.limits, stats)
    endpoints["/cluster"] = ClusterEndpoint(view, config.limits)
    endpoints.update(static_endpoints(view, config.limits, admin=True))   # /console/: the admin console page
    if registry is not None:
        endpoints["/metrics"] = MetricsEndpoint(view, config.limits, registry)
    return Api(endpoints, "web.access.admin", token=config.admin.token, stats=stats.listener("admin"),
               body_cap=config.limits.hard_body_cap)
