"""Route tables of the two web listeners, and their access loggers.

``make_public_app`` serves clients (GET, JSONP-capable); ``make_admin_app`` serves back ends (POST,
token-protected when configured). Unknown paths get HTTP 404 and a JSON envelope, never tornado's HTML.
Each listener logs one line per request to ``web.access.public`` / ``web.access.admin`` (children of
``web.access``): 2xx/3xx at INFO, 4xx at WARNING, 5xx at ERROR.
"""
from __future__ import annotations

import logging
from typing import Any, Callable

import tornado.web

from web.admin import DelPrivateHandler, PushMultiHandler, PushPrivateHandler
from web.cluster import ClusterView
from web.config import WebConfig
from web.handlers import LEGACY, V1, MsgHandler, NotFoundHandler, ServerHandler, TimeHandler

Route = tuple[str, type[tornado.web.RequestHandler], dict[str, Any]]


def access_log_function(logger_name: str) -> Callable[[tornado.web.RequestHandler], None]:
    """A tornado ``log_function``: method, path, HTTP status, ret, duration and peer of each request."""
    logger = logging.getLogger(logger_name)

    def log_request(handler: tornado.web.RequestHandler) -> None:
        status = handler.get_status()
        level = logging.INFO if status < 400 else logging.WARNING if status < 500 else logging.ERROR
        if not logger.isEnabledFor(level):
            return
        request = handler.request
        ret = getattr(handler, "ret", None)
        logger.log(level, "%s %s %d ret=%s %.1fms %s", request.method, request.path, status,
                   "-" if ret is None else int(ret), 1000.0 * request.request_time(), request.remote_ip)

    return log_request


def make_public_app(view: ClusterView, config: WebConfig) -> tornado.web.Application:
    """The client-facing API (DESIGN.md section 2)."""
    common: dict[str, Any] = {"view": view, "limits": config.limits}
    routes: list[Route] = [
        (r"/server/get", ServerHandler, {**common, "names": LEGACY}),
        (r"/1/server/get", ServerHandler, {**common, "names": V1}),
        (r"/2/server/get", ServerHandler, {**common, "names": V1, "all_addresses": True}),
        (r"/msg/get", MsgHandler, {**common, "names": LEGACY, "legacy": True}),
        (r"/1/msg/get", MsgHandler, {**common, "names": V1, "legacy": False}),
        (r"/time/get", TimeHandler, {**common, "names": LEGACY}),
        (r"/1/time/get", TimeHandler, {**common, "names": V1}),
    ]
    return _application(routes, common, "web.access.public")


def make_admin_app(view: ClusterView, config: WebConfig) -> tornado.web.Application:
    """The back-end API (DESIGN.md section 3)."""
    common: dict[str, Any] = {"view": view, "limits": config.limits, "token": config.admin.token}
    routes: list[Route] = []
    for paths, handler in (
        (("/push/private", "/1/admin/push/private", "/admin/push"), PushPrivateHandler),
        (("/push/mprivate", "/1/admin/push/mprivate"), PushMultiHandler),
        (("/msg/del", "/1/admin/msg/del", "/admin/msg/clean"), DelPrivateHandler),
    ):
        routes.extend((path, handler, common) for path in paths)
    return _application(routes, {"view": view, "limits": config.limits}, "web.access.admin")


def _application(routes: list[Route], not_found_args: dict[str, Any], access_logger: str) -> tornado.web.Application:
    return tornado.web.Application(
        routes,
        default_handler_class=NotFoundHandler,
        default_handler_args=not_found_args,
        log_function=access_log_function(access_logger),
    )
