"""The web node's request layer and its public endpoints /server/get and /time/get (legacy, /1/, /2/); /msg/get is
web.fetch_endpoint's.

Requests do not go through tornado's ``RequestHandler``: each one is an :class:`ApiRequest`, tornado's
lightweight ``HTTPMessageDelegate``, created by the listener's :class:`web.app.Api` and answered with one
envelope written straight to the HTTP connection (measured here: a bare ``RequestHandler`` costs about 140 µs of
CPU per request, a delegate 60 µs, on the same tornado HTTP server). What ``RequestHandler`` did for us is done
here: the 404/405 JSON pages, the ``Date``/``Server``/``Content-Length`` headers, a 500 envelope and a logged
traceback for a bug, the access log line. (``RequestHandler`` also sent an ``Etag`` and answered a matching
``If-None-Match`` with 304; with ``Cache-Control: no-store`` no client has anything to revalidate, so that is
gone.)

An :class:`Endpoint` answers one path and one method. ``serve(request)`` returns the JSON text of the reply's
``data`` (or None for none), or an awaitable of it; it raises a :class:`web.ret.RetError` subclass to answer with
that ret code. Endpoints that need no I/O (/server/get, /time/get) answer synchronously, without a task. The
fetch endpoints (/msg/get) are in web.fetch_endpoint, the admin endpoints in web.admin.
"""
from __future__ import annotations

import email.utils
import logging
import time
from dataclasses import dataclass
from http import HTTPStatus
from typing import Any, Awaitable, ClassVar, Protocol, TypeVar

import tornado
from tornado import httputil

from thirdparty.rpc_client import RemoteError, RpcUnavailable
from web.cluster import ClusterView
from web.config import LimitsConfig
from web.params import Proto, parse_key, parse_proto, parse_query, query_text
from web.ret import InternalError, NoNodeError, Ret, RetError, check_callback, envelope, error_for_code

log = logging.getLogger(__name__)

T = TypeVar("T")
JSONData = dict[str, Any]
Reply = bytes | None  # the JSON text of the envelope's "data", or None for an envelope without data

SERVER_HEADER = f"TornadoServer/{tornado.version}"
_OK_LINE = httputil.ResponseStartLine("HTTP/1.1", 200, "OK")
SUPPORTED_METHODS = ("GET", "HEAD", "POST", "DELETE", "PATCH", "PUT", "OPTIONS")  # what tornado answers 405 to


@dataclass(frozen=True, slots=True)
class ParamNames:
    """Query parameter names of one API generation (legacy: key/proto/mid/callback, 1.0: k/p/m/cb)."""

    key: str
    proto: str
    mid: str
    callback: str


LEGACY = ParamNames(key="key", proto="proto", mid="mid", callback="callback")
V1 = ParamNames(key="k", proto="p", mid="m", callback="cb")


async def rpc_call(what: str, call: Awaitable[T]) -> T:
    """Await an inner RPC; an unreachable node becomes InternalError, an error reply its own ret code."""
    try:
        return await call
    except RpcUnavailable as exc:
        raise InternalError(f"{what}: node unreachable ({exc})") from None
    except RemoteError as exc:
        raise error_for_code(exc.code, f"{what}: error {exc.code} {exc.message}") from None


class _DateHeader:
    """The ``Date`` header value, formatted once per second."""

    __slots__ = ("second", "text")

    def __init__(self) -> None:
        self.second = -1
        self.text = ""

    def now(self) -> str:
        second = int(time.time())
        if second != self.second:
            self.second, self.text = second, email.utils.formatdate(second, usegmt=True)
        return self.text


_DATE = _DateHeader()


class Dispatcher(Protocol):
    """What an ApiRequest hands itself to once it has been received (``web.app.Api``)."""

    def dispatch(self, request: ApiRequest) -> None: ...

    def log_access(self, request: ApiRequest) -> None: ...

    def connection_closed(self, request: ApiRequest) -> None: ...


class ApiRequest(httputil.HTTPMessageDelegate):
    """One request on a web listener, from its headers to the one response (an envelope) it gets."""

    __slots__ = ("_dispatcher", "connection", "method", "path", "query", "headers", "_chunks", "_args", "status",
                 "ret", "started", "answered", "closed")

    def __init__(self, dispatcher: Dispatcher, connection: httputil.HTTPConnection) -> None:
        self._dispatcher = dispatcher
        self.connection = connection
        self.method = ""
        self.path = ""
        self.query = ""
        self.headers: httputil.HTTPHeaders = httputil.HTTPHeaders()
        self._chunks: list[bytes] = []
        self._args: dict[str, str] | None = None
        self.status = 200
        self.ret: Ret | None = None  # the ret sent, for the access log
        self.started = 0.0
        self.answered = False
        self.closed = False

    # --- tornado's HTTPMessageDelegate ---------------------------------------------------------------------

    def headers_received(self, start_line: httputil.RequestStartLine | httputil.ResponseStartLine,
                         headers: httputil.HTTPHeaders) -> None:
        assert isinstance(start_line, httputil.RequestStartLine)
        self.started = time.monotonic()
        self.method = start_line.method
        self.path, _, self.query = start_line.path.partition("?")
        self.headers = headers

    def data_received(self, chunk: bytes) -> None:
        self._chunks.append(chunk)

    def finish(self) -> None:
        self._dispatcher.dispatch(self)

    def on_connection_close(self) -> None:
        self.closed = True
        if not self.answered:  # e.g. a body the HTTP server refused unread (counted by the dispatcher)
            self._dispatcher.connection_closed(self)

    # --- what endpoints read ------------------------------------------------------------------------------

    @property
    def body(self) -> bytes:
        chunks = self._chunks
        return chunks[0] if len(chunks) == 1 else b"".join(chunks)

    def arg(self, name: str) -> str:
        """A query parameter exactly as sent ("" when absent; the first value when repeated, as in Go).

        Unlike tornado's get_query_argument, nothing is stripped or replaced: a key must reach the message
        node byte for byte as the comet saw it.
        """
        args = self._args
        if args is None:
            args = self._args = parse_query(self.query)
        value = args.get(name)
        return query_text(value, name) if value else ""

    @property
    def remote_ip(self) -> str:
        context = getattr(self.connection, "context", None)
        return str(getattr(context, "remote_ip", "-"))

    def request_time(self) -> float:
        """Seconds since the request's headers arrived."""
        return time.monotonic() - self.started

    # --- answering ----------------------------------------------------------------------------------------

    def reply(self, ret: Ret, data: Reply = None, callback: str | None = None, msg: str | None = None) -> None:
        """Answer with the envelope (JSONP when ``callback`` is given), HTTP 200; ``msg`` replaces the ret's text."""
        self.ret = ret
        body, content_type = envelope(ret, data, callback, msg)
        self._write(_OK_LINE, content_type, body)

    def fail(self, exc: RetError, callback: str | None = None) -> None:
        """Answer with ``exc``'s ret code, after logging its reason once (client faults without a traceback)."""
        if isinstance(exc, InternalError):
            log.error("%s: %s", self.path, exc.reason)
        elif isinstance(exc, NoNodeError):
            log.warning("%s: %s", self.path, exc.reason)
        else:
            log.info("%s: %s", self.path, exc.reason)
        self.reply(exc.ret, None, callback, exc.msg)

    def reply_http_error(self, status: int, msg: str, headers: dict[str, str] | None = None) -> None:
        """An HTTP-level refusal (404, 405, 401, 429, 500): that status and a plain-JSON envelope."""
        self.status = status
        self.ret = Ret.INTERNAL if status >= 500 else Ret.PARAM
        body, content_type = envelope(self.ret, None, None, msg)
        try:
            reason = HTTPStatus(status).phrase
        except ValueError:
            reason = "Unknown"
        self._write(httputil.ResponseStartLine("HTTP/1.1", status, reason), content_type, body, headers)

    def _write(self, start_line: httputil.ResponseStartLine, content_type: str, body: bytes,
               extra: dict[str, str] | None = None) -> None:
        if self.answered:
            return
        self.answered = True
        if not self.closed:
            headers = httputil.HTTPHeaders()  # in the order tornado's RequestHandler sent them
            headers["Server"] = SERVER_HEADER
            headers["Content-Type"] = content_type
            headers["Date"] = _DATE.now()
            headers["Cache-Control"] = "no-store"
            headers["X-Content-Type-Options"] = "nosniff"
            if extra:
                headers.update(extra)
            headers["Content-Length"] = str(len(body))
            connection = self.connection
            connection.write_headers(start_line, headers, body if self.method != "HEAD" else None)
            connection.finish()
        self._dispatcher.log_access(self)


class Endpoint:
    """One route of a listener: the HTTP method it takes and what it answers (see the module docstring)."""

    method: ClassVar[str] = "GET"
    jsonp: ClassVar[bool] = False   # a callback parameter (``names.callback``) wraps the reply as JSONP
    admin: ClassVar[bool] = False   # needs the admin bearer token when one is configured

    def __init__(self, view: ClusterView, limits: LimitsConfig, names: ParamNames = LEGACY) -> None:
        self.view = view
        self.limits = limits
        self.names = names

    def serve(self, request: ApiRequest) -> Reply | Awaitable[Reply]:
        raise NotImplementedError


class ServerEndpoint(Endpoint):
    """/server/get, /1/server/get: the first address; /2/server/get: every address (``all_addresses``)."""

    jsonp = True

    def __init__(self, view: ClusterView, limits: LimitsConfig, names: ParamNames = LEGACY,
                 all_addresses: bool = False) -> None:
        super().__init__(view, limits, names)
        self.all_addresses = all_addresses

    def serve(self, request: ApiRequest) -> Reply:
        names = self.names
        key = parse_key(request.arg(names.key), self.limits.max_key_bytes, names.key)
        proto = parse_proto(request.arg(names.proto), names.proto)
        node = self.view.pick(key)
        if node is None:
            raise NoNodeError(f"key={key}: no comet node")
        data = node.server_json(websocket=proto is Proto.WEBSOCKET, every=self.all_addresses)
        if data is None:
            raise NoNodeError(f"key={key}: comet {node.name} has no {proto.name.lower()} address")
        return data


class TimeEndpoint(Endpoint):
    """/time/get, /1/time/get: a time id (100 ns units) lower than any mid issued after it."""

    jsonp = True

    def serve(self, request: ApiRequest) -> Reply:
        return b'{"timeid":%d}' % (time.time_ns() // 100)


def check_request_callback(endpoint: Endpoint, request: ApiRequest) -> str | None:
    """The JSONP callback of a request to ``endpoint`` (None for plain JSON); ParamError for a bad name."""
    if not endpoint.jsonp:
        return None
    return check_callback(request.arg(endpoint.names.callback))
