"""The web node's request layer and its public endpoints: /server/get, /msg/get, /time/get (legacy, /1/, /2/).

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
admin endpoints are in web.admin.
"""
from __future__ import annotations

import asyncio
import email.utils
import json
import logging
import time
from dataclasses import dataclass
from http import HTTPStatus
from typing import Any, Awaitable, Callable, ClassVar, Protocol, TypeVar

import tornado
from tornado import httputil

from message.client import FetchResult
from thirdparty.rpc_client import RemoteError, RpcUnavailable
from web.cluster import ClusterView
from web.config import LimitsConfig
from web.params import Proto, parse_key, parse_mid, parse_proto, parse_query, query_text
from web.ret import (InternalError, NoNodeError, Ret, RetError, check_callback, envelope, error_for_code,
                     json_string)

log = logging.getLogger(__name__)

T = TypeVar("T")
JSONData = dict[str, Any]
Reply = bytes | None  # the JSON text of the envelope's "data", or None for an envelope without data

SERVER_HEADER = f"TornadoServer/{tornado.version}"
_OK_LINE = httputil.ResponseStartLine("HTTP/1.1", 200, "OK")
SUPPORTED_METHODS = ("GET", "HEAD", "POST", "DELETE", "PATCH", "PUT", "OPTIONS")  # what tornado answers 405 to
PUBLIC = "(public)"  # what the log shows in place of a key for a public (broadcast) message


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


class MsgEndpoint(Endpoint):
    """/msg/get (legacy: each message a JSON string, plus "pmsgs") and /1/msg/get (raw message JSON).

    With ``pmid`` (legacy) / ``p`` (v1), the public (broadcast, gid 1) messages after it come in ``pmsgs`` too, asked
    of the message node at the same time as the key's; without it the fetch is the key's alone, as before."""

    jsonp = True
    on_fetch: Callable[[str, int, list[int], str], None] | None = None  # (key, mid, mids sent, src): web/tracing.py

    def __init__(self, view: ClusterView, limits: LimitsConfig, names: ParamNames = LEGACY,
                 legacy: bool = True) -> None:
        super().__init__(view, limits, names)
        self.legacy = legacy
        self.pmid_name = "pmid" if legacy else "p"   # the last public mid the client has (absent: no public part)

    def serve(self, request: ApiRequest) -> Awaitable[Reply]:
        names = self.names
        key = parse_key(request.arg(names.key), self.limits.max_key_bytes, names.key)
        mid = parse_mid(request.arg(names.mid), names.mid)
        pmid = request.arg(self.pmid_name)
        if pmid:
            return self._fetch_with_public(key, mid, parse_mid(pmid, self.pmid_name),
                                           request.remote_ip if self.on_fetch is not None else "")
        return self._fetch(key, mid, request.remote_ip if self.on_fetch is not None else "")

    async def _fetch(self, key: str, mid: int, src: str = "") -> Reply:
        result: FetchResult = await rpc_call(f"key={key}: message GetPrivate",
                                             self.view.message_client().get_private(key, mid))
        if self.on_fetch is not None and result.msgs:
            self.on_fetch(key, mid, [msg_id for msg_id, _ in result.msgs], src)
        if not result.msgs and not result.trimmed:
            return None  # gopush-cluster: ret 0 and no data when there is nothing new
        item = self._legacy_item if self.legacy else _item
        parts = [b'{"msgs":[', b",".join([item(key, msg_id, msg) for msg_id, msg in result.msgs]), b"]"]
        if self.legacy:
            parts.append(b',"pmsgs":[]')
        if result.trimmed:
            parts.append(b',"trimmed":true')
            log.info("key=%s mid=%d: older messages were trimmed before this fetch", key, mid)
        parts.append(b"}")
        return b"".join(parts)

    @staticmethod
    def _legacy_item(key: str, msg_id: int, msg: bytes) -> bytes:
        """gopush-cluster 1.0's form: the item is a JSON string holding ``{"msg": "<message JSON as a string>",
        "mid": N, "gid": 0}``."""
        text = _message_text(key, msg_id, msg)
        inner = b'{"msg":%b,"mid":%d,"gid":0}' % (b"null" if text is None else json_string(text), msg_id)
        return json_string(inner.decode("utf-8"))

    async def _fetch_with_public(self, key: str, mid: int, pmid: int, src: str) -> Reply:
        """The key's messages after ``mid`` and the public ones after ``pmid``, both asked at once; ``pmsgs`` (and
        ``ptrimmed``) beside the usual fields. No data only when both are empty and nothing was trimmed."""
        client = self.view.message_client()
        private, public = await asyncio.gather(
            rpc_call(f"key={key}: message GetPrivate", client.get_private(key, mid)),
            rpc_call(f"key={key} pmid={pmid}: message GetPublic", client.get_public(pmid)),
            return_exceptions=True)
        if isinstance(private, BaseException):
            raise private
        if isinstance(public, BaseException):
            raise public
        if self.on_fetch is not None and private.msgs:
            self.on_fetch(key, mid, [msg_id for msg_id, _ in private.msgs], src)
        if not (private.msgs or private.trimmed or public.msgs or public.trimmed):
            return None
        item, public_item = (self._legacy_item, _legacy_public_item) if self.legacy else (_item, _public_item)
        parts = [b'{"msgs":[', b",".join([item(key, msg_id, msg) for msg_id, msg in private.msgs]),
                 b'],"pmsgs":[', b",".join([public_item(msg_id, msg) for msg_id, msg in public.msgs]), b"]"]
        if private.trimmed:
            parts.append(b',"trimmed":true')
            log.info("key=%s mid=%d: older messages were trimmed before this fetch", key, mid)
        if public.trimmed:
            parts.append(b',"ptrimmed":true')
            log.info("key=%s pmid=%d: older public messages were trimmed before this fetch", key, pmid)
        parts.append(b"}")
        return b"".join(parts)


def _item(key: str, msg_id: int, msg: bytes) -> bytes:
    """``{"msg": <message JSON verbatim>, "mid": N, "gid": 0}``."""
    return b'{"msg":%b,"mid":%d,"gid":0}' % (msg if _message_text(key, msg_id, msg) is not None else b"null", msg_id)


def _public_item(msg_id: int, msg: bytes) -> bytes:
    """A public message: ``{"msg": <message JSON verbatim>, "mid": N, "gid": 1}``."""
    return b'{"msg":%b,"mid":%d,"gid":1}' % (msg if _message_text(PUBLIC, msg_id, msg) is not None else b"null",
                                              msg_id)


def _legacy_public_item(msg_id: int, msg: bytes) -> bytes:
    """A public message in the legacy form: a JSON string holding ``{"msg": "<message JSON as a string>", "mid": N,
    "gid": 1}``."""
    text = _message_text(PUBLIC, msg_id, msg)
    inner = b'{"msg":%b,"mid":%d,"gid":1}' % (b"null" if text is None else json_string(text), msg_id)
    return json_string(inner.decode("utf-8"))


def _message_text(key: str, msg_id: int, msg: bytes) -> str | None:
    """A stored message as JSON text; None (JSON null) for a stored value that is not UTF-8 JSON."""
    try:
        text = msg.decode("utf-8")
        json.loads(text)
    except (ValueError, RecursionError):
        log.error("key=%s mid=%d: stored message is not UTF-8 JSON, sent as null", key, msg_id)
        return None
    return text


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
