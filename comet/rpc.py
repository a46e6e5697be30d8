"""CometRPC: the MessagePack-RPC face of a comet node, thin over :class:`comet.service.CometService`.

Methods and results (architecture.md, "Internal RPC"); positional params, ``msg`` is the message's raw JSON as
bytes (a str is accepted and encoded as UTF-8, for generic MessagePack-RPC clients), ``expire`` in seconds:

    PushPrivate(key, msg, expire[, meta])    -> {"mid": N, "online": C[, "outcome": O]}
    PushPrivates(keys, msg, expire[, meta])  -> {"fk": [failed keys], "online": C[, "outcomes": {key: O}]}
    PushPublic(mid, msg)             -> {"online": C}: queued for the C connections of this moment (comet/broadcast.py)
    Close(key)                       -> number of connections closed
    Ping()                           -> "pong"
    Stat()                           -> the counters of GET /stat

``meta`` (optional, comet/ack_waiters.py) carries the web node's accepted time and source for the delivery
trace and may ask to wait for the outcome ``O`` of each key ("acked", "written", "offline", "timeout"); the reply
then comes once it is known, up to ``meta.timeout`` seconds after the write.

Errors: 1001 the key is not on this node, 65534 bad parameter (also what the message node refused as a bad
parameter, and a malformed meta), 65535 the message node cannot be reached or failed; for PushPublic 65535 is
"broadcast queue full" (or the node is stopping).
"""
from __future__ import annotations

import logging
from typing import Any, Callable

from comet.ack_waiters import MetaError, PushMeta, parse_meta
from comet.broadcast import Broadcaster
from comet.service import CometService
from thirdparty.rpc_client import RemoteError, RpcUnavailable
from thirdparty.rpc_codec import ERR_INTERNAL, ERR_PARAM, RpcError

log = logging.getLogger(__name__)


def _message_bytes(msg: Any) -> Any:
    """Accept a str message from clients that cannot send bin; anything else is checked by the service."""
    return msg.encode("utf-8", "surrogatepass") if isinstance(msg, str) else msg


class CometRPC:
    """Registered as ``"CometRPC"`` on the node's RpcServer."""

    RPC_METHODS = ("PushPrivate", "PushPrivates", "PushPublic", "Close", "Ping", "Stat")

    def __init__(self, service: CometService, stat: Callable[[], dict[str, Any]], *, max_wait: float = 60.0,
                 broadcaster: Broadcaster | None = None) -> None:
        self._service = service
        self._broadcaster = broadcaster
        self._stat = stat
        self._max_wait = max_wait

    def _meta(self, meta: Any) -> PushMeta:
        try:
            return parse_meta(meta, self._max_wait)
        except MetaError as exc:
            raise RpcError(ERR_PARAM, str(exc)) from None

    async def PushPrivate(self, key: Any, msg: Any, expire: Any, meta: Any = None) -> dict[str, Any]:
        push_meta = self._meta(meta)
        try:
            result = await self._service.push_private(key, _message_bytes(msg), expire, push_meta)
        except RpcUnavailable as exc:
            log.error("key=%s: message node unavailable (%s), push failed", key, exc)
            raise RpcError(ERR_INTERNAL, "message node unavailable") from None
        except RemoteError as exc:  # logged with its code by the RpcServer
            raise RpcError(exc.code, f"message node: {exc.message}") from None
        if push_meta.wait:
            return {"mid": result.mid, "online": result.online, "outcome": result.outcome}
        return {"mid": result.mid, "online": result.online}

    async def PushPrivates(self, keys: Any, msg: Any, expire: Any, meta: Any = None) -> dict[str, Any]:
        push_meta = self._meta(meta)
        failed, online, outcomes = await self._service.push_privates(keys, _message_bytes(msg), expire, push_meta)
        if push_meta.wait:
            return {"fk": failed, "online": online, "outcomes": outcomes}
        return {"fk": failed, "online": online}

    async def PushPublic(self, mid: Any, msg: Any) -> dict[str, int]:
        if self._broadcaster is None:
            raise RpcError(ERR_INTERNAL, "broadcast is not available on this node")
        return {"online": self._broadcaster.broadcast(mid, _message_bytes(msg))}

    async def Close(self, key: Any) -> int:
        return self._service.close_key(key)

    async def Ping(self) -> str:
        return "pong"

    async def Stat(self) -> dict[str, Any]:
        return self._stat()
