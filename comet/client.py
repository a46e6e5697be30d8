"""The comet role's public face: ``CometAPI`` / ``CometClient`` (its MessagePack-RPC client) and the node schema.

Web nodes import only this module (it loads no server code). Calls raise ``thirdparty.rpc_client.RpcUnavailable``
(``RpcTimeout``) when the comet cannot be reached in time and ``RemoteError`` with the comet's code otherwise:
1001 the key is not on that comet, 65534 bad parameter, 65535 the comet could not reach its message node. A reply
of the wrong shape raises ``RemoteError(ERR_INTERNAL, ...)``.

:class:`CometNodeInfo` is what a comet publishes about itself (DESIGN.md section 7: the znode JSON
``{"rpc": [...], "tcp": [...], "ws": [...], "weight": W}``; the name is the znode's parent, and is also written
as ``"name"`` so that the JSON stands on its own).
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any, Mapping, Protocol, Sequence

from thirdparty.confload import ConfigError, parse_address
from thirdparty.rpc_client import RemoteError, RpcClient
from thirdparty.rpc_codec import ERR_INTERNAL

__all__ = ["CometAPI", "CometClient", "CometNodeInfo", "PushResult", "SERVICE"]

SERVICE = "CometRPC"


@dataclass(frozen=True, slots=True)
class PushResult:
    """The mid the message got, the number of connections it was written to, and its outcome when the push asked
    for one (``comet/ack_waiters.py``: "acked", "written", "offline", "timeout"; else "")."""

    mid: int
    online: int
    outcome: str = ""


OUTCOMES = ("acked", "written", "offline", "timeout")


@dataclass(frozen=True)
class CometNodeInfo:
    """A comet node as the cluster sees it: ring name and weight, RPC address, client addresses."""

    name: str
    weight: int
    rpc: list[str] = field(default_factory=list)
    tcp: list[str] = field(default_factory=list)
    ws: list[str] = field(default_factory=list)

    def to_json(self) -> bytes:
        return json.dumps({"name": self.name, "weight": self.weight, "rpc": self.rpc, "tcp": self.tcp,
                           "ws": self.ws}, separators=(",", ":")).encode("utf-8")

    @classmethod
    def from_json(cls, data: bytes, name: str | None = None) -> CometNodeInfo:
        """Parse and validate a published node; ``name`` (the znode's name) wins over a ``"name"`` field.

        Raises ValueError naming the problem.
        """
        try:
            doc = json.loads(data.decode("utf-8"))
        except (UnicodeDecodeError, ValueError) as exc:
            raise ValueError(f"comet node info is not JSON: {exc}") from None
        if not isinstance(doc, dict):
            raise ValueError("comet node info must be a JSON object")
        node_name = name if name is not None else doc.get("name")
        if not isinstance(node_name, str) or not node_name:
            raise ValueError("comet node info: name must be a non-empty string")
        weight = doc.get("weight", 1)
        if not isinstance(weight, int) or isinstance(weight, bool) or weight < 1:
            raise ValueError(f"comet {node_name}: weight must be an integer >= 1")
        lists = {}
        for kind in ("rpc", "tcp", "ws"):
            value = doc.get(kind, [])
            if not isinstance(value, list) or not all(isinstance(item, str) for item in value):
                raise ValueError(f"comet {node_name}: {kind} must be a list of host:port strings")
            for address in value:
                try:
                    parse_address(address)
                except ConfigError as exc:
                    raise ValueError(f"comet {node_name}: {kind}: {exc}") from None
            lists[kind] = list(value)
        return cls(name=node_name, weight=weight, rpc=lists["rpc"], tcp=lists["tcp"], ws=lists["ws"])


class CometAPI(Protocol):
    """What the web needs from a comet node (``CometClient``, or a fake in tests)."""

    async def push_private(self, key: str, msg: bytes, expire: int, meta: Mapping[str, Any] | None = None, *,
                           timeout: float | None = None) -> PushResult:
        """Assign ``msg`` the key's next mid, store it for ``expire`` s (0 = not stored), write it to the key.
        ``meta`` (comet/ack_waiters.py) adds trace data and may ask for the outcome; ``timeout`` bounds the call."""

    async def push_privates(self, keys: Sequence[str], msg: bytes, expire: int) -> list[str]:
        """``push_private`` for many keys of this node; returns the keys that failed."""

    async def push_privates_counted(self, keys: Sequence[str], msg: bytes, expire: int,
                                    meta: Mapping[str, Any] | None = None, *,
                                    timeout: float | None = None) -> tuple[list[str], int, dict[str, str]]:
        """``push_privates`` with ``meta`` and the whole reply: (the keys that failed, the connections written to,
        the outcome of each pushed key when ``meta`` asks to wait)."""

    async def push_public(self, mid: int, msg: bytes) -> int:
        """Queue the public message ``mid`` (gid 1) for every connection of the node; returns how many it will be
        written to (the node's connections when it was queued)."""

    async def close_key(self, key: str) -> int:
        """Close the key's connections; returns how many were closed."""

    async def ping(self) -> None:
        """Raise unless the node answers."""

    async def stat(self) -> dict[str, Any]:
        """The node's counters."""

    async def close(self) -> None:
        """Close the connection."""


class CometClient(CometAPI):
    """``CometAPI`` over one MessagePack-RPC connection to a comet node at ``host:port``."""

    def __init__(self, address: str, *, timeout: float = 3.0) -> None:
        self.address = address
        self._rpc = RpcClient(address, timeout=timeout)

    async def push_private(self, key: str, msg: bytes, expire: int, meta: Mapping[str, Any] | None = None, *,
                           timeout: float | None = None) -> PushResult:
        params = (key, msg, expire) if meta is None else (key, msg, expire, dict(meta))
        reply = await self._rpc.call(f"{SERVICE}.PushPrivate", *params, timeout=timeout)
        if not isinstance(reply, dict):
            raise _malformed("PushPrivate", reply)
        outcome = reply.get("outcome", "")
        if outcome and outcome not in OUTCOMES:
            raise _malformed("PushPrivate", reply)
        return PushResult(mid=_int(reply.get("mid"), "PushPrivate"), online=_int(reply.get("online"), "PushPrivate"),
                          outcome=outcome)

    async def push_privates(self, keys: Sequence[str], msg: bytes, expire: int) -> list[str]:
        reply = await self._rpc.call(f"{SERVICE}.PushPrivates", list(keys), msg, expire)
        failed = reply.get("fk") if isinstance(reply, dict) else None
        if not isinstance(failed, list) or not all(isinstance(key, str) for key in failed):
            raise _malformed("PushPrivates", reply)
        return failed

    async def push_privates_counted(self, keys: Sequence[str], msg: bytes, expire: int,
                                    meta: Mapping[str, Any] | None = None, *,
                                    timeout: float | None = None) -> tuple[list[str], int, dict[str, str]]:
        params: tuple[Any, ...] = (list(keys), msg, expire) if meta is None else (list(keys), msg, expire, dict(meta))
        reply = await self._rpc.call(f"{SERVICE}.PushPrivates", *params, timeout=timeout)
        if not isinstance(reply, dict):
            raise _malformed("PushPrivates", reply)
        failed, online, outcomes = reply.get("fk"), reply.get("online", 0), reply.get("outcomes", {})
        if (not isinstance(failed, list) or not all(isinstance(key, str) for key in failed)
                or not isinstance(online, int) or isinstance(online, bool) or online < 0
                or not isinstance(outcomes, dict)
                or not all(isinstance(key, str) and value in OUTCOMES for key, value in outcomes.items())):
            raise _malformed("PushPrivates", reply)
        return failed, online, outcomes

    async def push_public(self, mid: int, msg: bytes) -> int:
        reply = await self._rpc.call(f"{SERVICE}.PushPublic", mid, msg)
        if not isinstance(reply, dict):
            raise _malformed("PushPublic", reply)
        return _int(reply.get("online"), "PushPublic")

    async def close_key(self, key: str) -> int:
        return _int(await self._rpc.call(f"{SERVICE}.Close", key), "Close")

    async def ping(self) -> None:
        reply = await self._rpc.call(f"{SERVICE}.Ping")
        if reply != "pong":
            raise _malformed("Ping", reply)

    async def stat(self) -> dict[str, Any]:
        reply = await self._rpc.call(f"{SERVICE}.Stat")
        if not isinstance(reply, dict):
            raise _malformed("Stat", reply)
        return reply

    async def close(self) -> None:
        await self._rpc.close()


def _int(value: Any, method: str) -> int:
    if not isinstance(value, int) or isinstance(value, bool):
        raise _malformed(method, value)
    return value


def _malformed(method: str, value: Any) -> RemoteError:
    return RemoteError(ERR_INTERNAL, f"malformed {SERVICE}.{method} reply: {repr(value)[:80]}")
