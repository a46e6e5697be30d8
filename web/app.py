"""Route tables of the two web listeners, request dispatch, and their access loggers.

``make_public_app`` serves clients (GET, JSONP-capable); ``make_admin_app`` serves back ends (POST,
token-protected when configured). Each is an :class:`Api`: a tornado ``Application`` (what ``HTTPServer``
takes) that hands every request to a lean :class:`web.handlers.ApiRequest` and routes it by exact path to its
:class:`web.handlers.Endpoint`, without tornado's ``RequestHandler`` (see web/handlers.py for why). Unknown paths
get HTTP 404 and a JSON envelope, a method the path does not take HTTP 405, never tornado's HTML.
Each listener logs one line per request to ``web.access.public`` / ``web.access.admin`` (children of
``web.access``): 2xx/3xx at INFO, 4xx at WARNING, 5xx at ERROR.
"""
from __future__ import annotations

import asyncio
import logging
from typing import Any, Awaitable

import tornado.web
from tornado import httputil

from web.admin import DelPrivateEndpoint, PushMultiEndpoint, PushPrivateEndpoint, token_matches
from web.cluster import ClusterView
from web.config import WebConfig
from web.handlers import (LEGACY, SUPPORTED_METHODS, V1, ApiRequest, Endpoint, MsgEndpoint, Reply, ServerEndpoint,
                          TimeEndpoint, check_request_callback)
from web.ret import ParamError, Ret, RetError
from web.static_files import static_endpoints
from web.trace_handlers import KeyTraceEndpoint, MsgTraceEndpoint
from web.tracing import WebTracer

log = logging.getLogger(__name__)

AUTHENTICATE = {"WWW-Authenticate": 'Bearer realm="pushcluster-admin"'}


class Api(tornado.web.Application):
    """One listener's endpoints by path; every request becomes an :class:`ApiRequest` dispatched here."""

    def __init__(self, endpoints: dict[str, Endpoint], access_logger: str, token: str = "") -> None:
        super().__init__()
        self.endpoints = endpoints
        self.token = token
        self.access_log = logging.getLogger(access_logger)
        self._running: set[asyncio.Task[None]] = set()
        self._loop: asyncio.AbstractEventLoop | None = None

    def start_request(self, server_conn: object,
                      request_conn: httputil.HTTPConnection) -> httputil.HTTPMessageDelegate:
        return ApiRequest(self, request_conn)

    def dispatch(self, request: ApiRequest) -> None:
        """Route a fully received request: 404 / 405 / 401 as tornado's RequestHandler would, else the endpoint."""
        endpoint = self.endpoints.get(request.path)
        method = request.method
        if method not in SUPPORTED_METHODS:
            request.reply_http_error(405, "method not allowed")
            return
        if endpoint is None:
            request.reply_http_error(404, "not found")
            return
        if endpoint.admin and self.token and not self._authorized(request):
            return
        if method != endpoint.method:
            request.reply_http_error(405, "method not allowed")
            return
        self.answer(request, endpoint)

    def _authorized(self, request: ApiRequest) -> bool:
        if token_matches(request.headers.get("Authorization", ""), self.token):
            return True
        log.warning("%s: admin request from %s refused: missing or wrong bearer token", request.path,
                    request.remote_ip)
        request.reply_http_error(401, "unauthorized", AUTHENTICATE)
        return False

    def answer(self, request: ApiRequest, endpoint: Endpoint) -> None:
        """Run ``endpoint`` and reply; an endpoint that returns an awaitable replies from a task when it is done."""
        try:
            callback = check_request_callback(endpoint, request)
        except ParamError as exc:  # an invalid callback name is answered in plain JSON and never echoed
            request.fail(exc)
            return
        try:
            result = endpoint.serve(request)
        except RetError as exc:
            request.fail(exc, callback)
            return
        except Exception:  # noqa: BLE001 - a bug: a 500 envelope and the traceback in the log
            _crashed(request)
            return
        if result is None or isinstance(result, bytes):
            request.reply(Ret.OK, result, callback)
            return
        loop = self._loop or asyncio.get_running_loop()  # one lookup: it costs a getpid() each time
        self._loop = loop
        task = loop.create_task(_answer_later(request, result, callback))
        self._running.add(task)
        task.add_done_callback(self._running.discard)

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
        ret = request.ret
        logger.log(level, "%s %s %d ret=%s %.1fms %s", request.method, request.path, status,
                   "-" if ret is None else int(ret), 1000.0 * request.request_time(), request.remote_ip)


async def _answer_later(request: ApiRequest, result: Awaitable[Reply], callback: str | None) -> None:
    try:
        data = await result
    except RetError as exc:
        request.fail(exc, callback)
    except Exception:  # noqa: BLE001 - a bug: a 500 envelope and the traceback in the log
        _crashed(request)
    else:
        request.reply(Ret.OK, data, callback)


def _crashed(request: ApiRequest) -> None:
    log.error("%s %s: internal error", request.method, request.path, exc_info=True)
    request.reply_http_error(500, "internal error")


def make_public_app(view: ClusterView, config: WebConfig, tracer: WebTracer | None = None) -> Api:
    """The client-facing API (DESIGN.md section 2); ``tracer`` traces the messages each fetch returns."""
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
    return Api(endpoints, "web.access.public")


def make_admin_app(view: ClusterView, config: WebConfig, tracer: WebTracer | None = None) -> Api:
    """The back-end API (DESIGN.md section 3), with the trace queries; ``tracer`` traces failed pushes."""
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
    return Api(endpoints, "web.access.admin", token=config.admin.token)
