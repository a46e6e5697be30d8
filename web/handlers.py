"""Public HTTP API handlers: /server/get, /msg/get, /time/get in their legacy, /1/ and /2/ forms.

Every handler parses its parameters (web.params), asks the ClusterView, and writes one envelope through
:meth:`ApiHandler.reply`; failures are RetError subclasses mapped to their ret code in one place
(:meth:`ApiHandler.respond`). ``ApiHandler`` is also the base of the admin handlers (web.admin).
"""
from __future__ import annotations

import json
import logging
import time
from dataclasses import dataclass
from http import HTTPStatus
from typing import Any, Awaitable, TypeVar

import tornado.web

from message.client import FetchResult
from thirdparty.rpc_client import RemoteError, RpcUnavailable
from web.cluster import ClusterView
from web.config import LimitsConfig
from web.params import Proto, parse_key, parse_mid, parse_proto
from web.ret import (InternalError, NoNodeError, ParamError, RawJSON, Ret, RetError, check_callback, dumps,
                     error_for_code, render)

log = logging.getLogger(__name__)

T = TypeVar("T")
JSONData = dict[str, Any]


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


class ApiHandler(tornado.web.RequestHandler):
    """Base of every web endpoint: one envelope writer, RetError mapping, JSON error pages."""

    names: ParamNames = LEGACY
    ret: Ret | None = None  # the ret sent, for the access log

    def initialize(self, view: ClusterView, limits: LimitsConfig, names: ParamNames = LEGACY) -> None:
        self.view = view
        self.limits = limits
        self.names = names

    def set_default_headers(self) -> None:
        self.set_header("Cache-Control", "no-store")
        self.set_header("X-Content-Type-Options", "nosniff")

    def arg(self, name: str) -> str:
        """A query parameter exactly as sent ("" when absent; the first value when repeated, as in Go).

        Unlike tornado's get_query_argument, nothing is stripped or replaced: a key must reach the message
        node byte for byte as the comet saw it.
        """
        values = self.request.query_arguments.get(name)
        if not values:
            return ""
        try:
            return values[0].decode("utf-8")
        except UnicodeDecodeError:
            raise ParamError(f"{name} is not UTF-8") from None

    def reply(self, ret: Ret, data: JSONData | None = None, callback: str | None = None) -> None:
        """Write the one response envelope (JSONP when ``callback`` is given) and finish."""
        self.ret = ret
        body, content_type = render(ret, data, callback)
        self.set_header("Content-Type", content_type)
        self.finish(body)

    async def respond(self, call: Awaitable[JSONData | None], callback: str | None = None) -> None:
        """Reply with the data ``call`` returns, or with the ret code of the RetError it raises."""
        try:
            data = await call
        except RetError as exc:
            self._log_ret_error(exc)
            self.reply(exc.ret, None, callback)
            return
        self.reply(Ret.OK, data, callback)

    def _log_ret_error(self, exc: RetError) -> None:
        path = self.request.path
        if isinstance(exc, InternalError):
            log.error("%s: %s", path, exc.reason)
        elif isinstance(exc, NoNodeError):
            log.warning("%s: %s", path, exc.reason)
        else:
            log.info("%s: %s", path, exc.reason)

    def reply_http_error(self, status: int, msg: str) -> None:
        """An HTTP-level refusal (404, 405, 401, ...): that status and a plain-JSON envelope."""
        self.set_status(status)
        self.ret = Ret.INTERNAL if status >= 500 else Ret.PARAM
        body, content_type = render(self.ret, msg=msg)
        self.set_header("Content-Type", content_type)
        self.finish(body)

    def write_error(self, status_code: int, **kwargs: Any) -> None:
        """Tornado's error page (unknown method, malformed request, uncaught bug) as a JSON envelope."""
        try:
            phrase = HTTPStatus(status_code).phrase.lower()
        except ValueError:
            phrase = "error"
        self.reply_http_error(status_code, phrase if status_code < 500 else "internal error")


class PublicHandler(ApiHandler):
    """A public GET endpoint: JSONP-capable; an invalid callback name is a param error in plain JSON."""

    async def get(self) -> None:
        try:
            callback = check_callback(self.arg(self.names.callback))
        except ParamError as exc:
            self._log_ret_error(exc)
            self.reply(exc.ret)
            return
        await self.respond(self.serve(), callback)

    async def serve(self) -> JSONData | None:
        raise NotImplementedError


class ServerHandler(PublicHandler):
    """/server/get, /1/server/get: the first address; /2/server/get: every address (``all_addresses``)."""

    def initialize(self, view: ClusterView, limits: LimitsConfig, names: ParamNames = LEGACY,
                   all_addresses: bool = False) -> None:
        super().initialize(view, limits, names)
        self.all_addresses = all_addresses

    async def serve(self) -> JSONData:
        key = parse_key(self.arg(self.names.key), self.limits.max_key_bytes, self.names.key)
        proto = parse_proto(self.arg(self.names.proto), self.names.proto)
        node = self.view.pick(key)
        if node is None:
            raise NoNodeError(f"key={key}: no comet node")
        addresses = node.addresses(websocket=proto is Proto.WEBSOCKET)
        if not addresses:
            raise NoNodeError(f"key={key}: comet {node.name} has no {proto.name.lower()} address")
        return {"server": addresses if self.all_addresses else addresses[0]}


class MsgHandler(PublicHandler):
    """/msg/get (legacy: each message a JSON string, plus "pmsgs") and /1/msg/get (raw message JSON)."""

    def initialize(self, view: ClusterView, limits: LimitsConfig, names: ParamNames = LEGACY,
                   legacy: bool = True) -> None:
        super().initialize(view, limits, names)
        self.legacy = legacy

    async def serve(self) -> JSONData | None:
        key = parse_key(self.arg(self.names.key), self.limits.max_key_bytes, self.names.key)
        mid = parse_mid(self.arg(self.names.mid), self.names.mid)
        result: FetchResult = await rpc_call(f"key={key}: message GetPrivate",
                                             self.view.message_client().get_private(key, mid))
        if not result.msgs and not result.trimmed:
            return None  # gopush-cluster: ret 0 and no data when there is nothing new
        data: JSONData = {"msgs": [self._item(key, msg_id, msg) for msg_id, msg in result.msgs]}
        if self.legacy:
            data["pmsgs"] = []
        if result.trimmed:
            data["trimmed"] = True
            log.info("key=%s mid=%d: older messages were trimmed before this fetch", key, mid)
        return data

    def _item(self, key: str, msg_id: int, msg: bytes) -> Any:
        text = _message_text(key, msg_id, msg)
        if self.legacy:
            return dumps({"msg": text, "mid": msg_id, "gid": 0})
        return {"msg": RawJSON(text) if text is not None else None, "mid": msg_id, "gid": 0}


def _message_text(key: str, msg_id: int, msg: bytes) -> str | None:
    """A stored message as JSON text; None (JSON null) for a stored value that is not UTF-8 JSON."""
    try:
        text = msg.decode("utf-8")
        json.loads(text)
    except (ValueError, RecursionError):
        log.error("key=%s mid=%d: stored message is not UTF-8 JSON, sent as null", key, msg_id)
        return None
    return text


class TimeHandler(PublicHandler):
    """/time/get, /1/time/get: a time id (100 ns units) lower than any mid issued after it."""

    async def serve(self) -> JSONData:
        return {"timeid": time.time_ns() // 100}


class NotFoundHandler(ApiHandler):
    """Any unknown path: HTTP 404 with a param-error envelope instead of tornado's HTML page."""

    def prepare(self) -> None:
        self.reply_http_error(404, "not found")
