"""The public listener's static files: the browser SDK (``/static/pushcluster.js``) and its demo page (``/demo/``).

The files are a fixed list in the package's ``web/static/`` directory (shipped as package data). They are read
once, when the listener is built. No part of a request path ever reaches the file system: there is no path
traversal and no directory listing. ``/static/`` and every name not in the list get the API's JSON 404.

Every file is sent with its ``Content-Type``, an ``ETag`` (a SHA-256 prefix of its bytes),
``Cache-Control: no-cache`` and ``X-Content-Type-Options: nosniff``. With ``no-cache`` a browser revalidates on
each use: the URLs carry no version, so a new release is picked up at once. A matching ``If-None-Match`` gets a
304 with no body. The scripts may be loaded from any origin (``Access-Control-Allow-Origin: *``, which
``<script type="module">`` needs). The demo page also gets a Content-Security-Policy that allows only its own
scripts and styles, and connections to this origin and to WebSocket comets. ``/demo`` redirects to ``/demo/``.

Each file is an :class:`web.handlers.Endpoint`, so the :class:`web.app.Api` routes it by exact path like the
API. It writes its own response, since it is not an envelope, and marks the request answered.
"""
from __future__ import annotations

import email.utils
import hashlib
import importlib.resources
import logging
import time
from dataclasses import dataclass
from http import HTTPStatus
from typing import ClassVar

from tornado import httputil

from web.cluster import ClusterView
from web.config import LimitsConfig
from web.handlers import SERVER_HEADER, ApiRequest, Endpoint, Reply

log = logging.getLogger(__name__)
access_log = logging.getLogger("web.access.public")

JS = "text/javascript;charset=utf-8"
DEMO_CSP = ("default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
            "connect-src 'self' ws: wss:; base-uri 'none'; form-action 'none'; frame-ancestors 'none'")

# URL path -> (file in web/static/, Content-Type, extra headers)
FILES: dict[str, tuple[str, str, dict[str, str]]] = {
    "/static/pushcluster.js": ("pushcluster.js", JS, {"Access-Control-Allow-Origin": "*"}),
    "/static/demo.js": ("demo.js", JS, {}),
    "/static/demo.css": ("demo.css", "text/css;charset=utf-8", {}),
    "/demo/": ("demo.html", "text/html;charset=utf-8",
               {"Content-Security-Policy": DEMO_CSP, "X-Frame-Options": "DENY", "Referrer-Policy": "no-referrer"}),
}
REDIRECTS = {"/demo": "demo/"}  # relative: also right behind a proxy that adds a path prefix

# The admin console (admin listener only): the page holds no data; its script asks for the admin token and calls
# the admin JSON API (/stat, /cluster, /key/trace, /key/info, /tag/keys, /msg/trace) on the same origin.
CONSOLE_CSP = ("default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; "
               "base-uri 'none'; form-action 'none'; frame-ancestors 'none'")
ADMIN_FILES: dict[str, tuple[str, str, dict[str, str]]] = {
    "/console/console.js": ("console.js", JS, {}),
    "/console/console.css": ("console.css", "text/css;charset=utf-8", {}),
    "/console/": ("console.html", "text/html;charset=utf-8",
                  {"Content-Security-Policy": CONSOLE_CSP, "X-Frame-Options": "DENY", "Referrer-Policy": "no-referrer"}),
}
ADMIN_REDIRECTS = {"/console": "console/"}


@dataclass(frozen=True)
class Asset:
    """One file's bytes and response headers."""

    body: bytes
    etag: str
    headers: dict[str, str]

    @classmethod
    def load(cls, name: str, content_type: str, extra: dict[str, str]) -> Asset:
        body = importlib.resources.files("web").joinpath("static", name).read_bytes()
        etag = '"' + hashlib.sha256(body).hexdigest()[:20] + '"'
        headers = {"Content-Type": content_type, "ETag": etag, "Cache-Control": "no-cache",
                   "X-Content-Type-Options": "nosniff", **extra}
        return cls(body, etag, headers)


def etag_matches(if_none_match: str, etag: str) -> bool:
    """True when an ``If-None-Match`` value names ``etag`` (weak comparison, RFC 9110 section 13.1.2) or is ``*``."""
    if if_none_match.strip() == "*":
        return True
    return any(tag.strip().removeprefix("W/") == etag for tag in if_none_match.split(","))


def send(request: ApiRequest, status: int, headers: dict[str, str], body: bytes = b"",
         logger: logging.Logger = access_log) -> None:
    """Write a whole non-envelope response to ``request`` and log it like the API's access log (``logger``)."""
    request.answered = True   # the Api's envelope reply, made after serve() returns, is then a no-op
    request.status = status
    if not request.closed:
        head = httputil.HTTPHeaders({"Server": SERVER_HEADER, "Date": email.utils.formatdate(time.time(), usegmt=True)})
        head.update(headers)
        if status != 304:   # a 304 has no body, and its Content-Length would have to be the file's
            head["Content-Length"] = str(len(body))
        start = httputil.ResponseStartLine("HTTP/1.1", status, HTTPStatus(status).phrase)
        request.connection.write_headers(start, head, body if request.method != "HEAD" and status != 304 else None)
        request.connection.finish()
    if logger.isEnabledFor(logging.INFO):
        logger.info("%s %s %d ret=- %.1fms %s", request.method, request.path, status,
                        1000.0 * request.request_time(), request.remote_ip)


class StaticFileEndpoint(Endpoint):
    """GET one static file (with ``If-None-Match`` revalidation)."""

    jsonp: ClassVar[bool] = False
    access_log: logging.Logger = access_log   # the admin console's files log to web.access.admin

    def __init__(self, view: ClusterView, limits: LimitsConfig, asset: Asset) -> None:
        super().__init__(view, limits)
        self.asset = asset

    def serve(self, request: ApiRequest) -> Reply:
        asset = self.asset
        if etag_matches(request.headers.get("If-None-Match", ""), asset.etag):
            send(request, 304, {"ETag": asset.etag, "Cache-Control": "no-cache"}, logger=self.access_log)
        else:
            send(request, 200, asset.headers, asset.body, self.access_log)
        return None


class RedirectEndpoint(Endpoint):
    """GET a path that moved: 301 to ``location``, keeping the query string."""

    jsonp: ClassVar[bool] = False
    access_log: logging.Logger = access_log

    def __init__(self, view: ClusterView, limits: LimitsConfig, location: str) -> None:
        super().__init__(view, limits)
        self.location = location

    def serve(self, request: ApiRequest) -> Reply:
        target = self.location + ("?" + request.query if request.query else "")
        send(request, 301, {"Location": target, "Content-Type": "text/plain;charset=utf-8"}, b"moved\n", self.access_log)
        return None


def static_endpoints(view: ClusterView, limits: LimitsConfig, *, admin: bool = False) -> dict[str, Endpoint]:
    """The routes of the static files: the public listener's (``FILES``), or with ``admin`` the admin console's
    (``ADMIN_FILES``). A file missing from the package is logged and left out."""
    files, redirects = (ADMIN_FILES, ADMIN_REDIRECTS) if admin else (FILES, REDIRECTS)
    endpoints: dict[str, Endpoint] = {}
    for path, (name, content_type, extra) in files.items():
        try:
            asset = Asset.load(name, content_type, extra)
        except OSError as exc:
            log.error("%s: web/static/%s cannot be read (is the package data installed?): %s", path, name, exc)
            continue
        endpoints[path] = StaticFileEndpoint(view, limits, asset)
    for path, location in redirects.items():
        endpoints[path] = RedirectEndpoint(view, limits, location)
    if admin:
        for endpoint in endpoints.values():
            assert isinstance(endpoint, (StaticFileEndpoint, RedirectEndpoint))
            endpoint.access_log = logging.getLogger("web.access.admin")
    return endpoints
