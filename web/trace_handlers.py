"""The trace queries of the admin listener: ``GET /msg/trace?key=&mid=`` and ``GET /key/trace?key=``.

Both are thin: check the parameters (a key as for a push, 1..128 bytes; a mid of 1..19 digits, >= 1: else ret
65534), ask a message node (``MessageRPC.MsgTrace`` / ``KeyTrace``; the trace and the verdict are computed
there, next to the store: message/trace_service.py) and send its document as the envelope's ``data``. A message
node that cannot be reached, or has tracing turned off, is ret 65535. They need the admin token like every admin
endpoint; unlike the pushes they are GETs (they change nothing) and never JSONP.
"""
from __future__ import annotations

import json
import logging
from typing import Any, Awaitable, ClassVar

from message.trace_api import KEY_TRACE, MSG_TRACE, trace_api
from web.handlers import ApiRequest, Endpoint, Reply, rpc_call
from web.params import parse_key, parse_mid
from web.ret import InternalError, ParamError

log = logging.getLogger(__name__)


class TraceEndpoint(Endpoint):
    """Base of the trace queries: GET, admin token (when configured), plain JSON."""

    method: ClassVar[str] = "GET"
    admin: ClassVar[bool] = True

    async def _query(self, key: str, method: str, *params: Any) -> Reply:
        api = trace_api(self.view.message_client())
        if api is None:
            raise InternalError(f"key={key}: the message client cannot answer trace queries")
        doc = await rpc_call(f"key={key}: message {method}", api.trace_query(method, *params))
        try:
            return json.dumps(doc, ensure_ascii=False, separators=(",", ":"), allow_nan=False).encode("utf-8")
        except (TypeError, ValueError) as exc:
            raise InternalError(f"key={key}: message {method} sent a document that is not JSON: {exc}") from None


class MsgTraceEndpoint(TraceEndpoint):
    """``GET /msg/trace?key=K&mid=N`` -> ``{"key", "mid", "events": [...], "verdict": {"state", "text"}}``."""

    def serve(self, request: ApiRequest) -> Awaitable[Reply]:
        key = parse_key(request.arg("key"), self.limits.max_key_bytes)
        mid = parse_mid(request.arg("mid"))
        if mid < 1:
            raise ParamError("mid must be >= 1")
        return self._query(key, MSG_TRACE, key, mid)


class KeyTraceEndpoint(TraceEndpoint):
    """``GET /key/trace?key=K`` -> ``{"key", "connections", "messages", "failures", "fetches", "deletes"}``."""

    def serve(self, request: ApiRequest) -> Awaitable[Reply]:
        key = parse_key(request.arg("key"), self.limits.max_key_bytes)
        return self._query(key, KEY_TRACE, key)
