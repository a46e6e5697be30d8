"""``MessageAPI`` (what comet and web need from the message role) and ``MessageClient``, its implementation over
one MessagePack-RPC connection to one message node.

Import these through ``message.client``, the role's public face (docs/architecture.md). Calls raise
``thirdparty.rpc_client.RpcUnavailable`` (``RpcTimeout``) when the node cannot be reached in time and
``RemoteError`` with the node's code (65534 bad parameter, 65535 storage unavailable) otherwise; a reply of the
wrong shape raises ``RemoteError(ERR_INTERNAL, ...)`` (the reply checks at the end of this module).
"""
from __future__ import annotations

from typing import Any, Protocol, Sequence

from message.storage import FetchResult
from thirdparty.rpc_codec import ERR_INTERNAL
from thirdparty.rpc_client import RemoteError, RpcClient

__all__ = ["MessageAPI", "MessageClient", "SERVICE"]

SERVICE = "MessageRPC"


class MessageAPI(Protocol):
    """What comet and web need from the message role (``MessageClient``, or a fake in tests)."""

    async def save_private(self, key: str, msg: bytes, expire: int) -> int:
        """Assign the key's next mid and store ``msg`` for ``expire`` seconds (0 = do not store)."""

    async def save_privates(self, keys: Sequence[str], msg: bytes, expire: int) -> dict[str, int]:
        """``save_private`` for many keys; returns ``{key: mid}`` for the saved keys, a missing key failed."""

    async def get_private(self, key: str, mid: int) -> FetchResult:
        """Messages with mid > ``mid``, ascending (the oldest ones first when the reply is size-capped)."""

    async def del_private(self, key: str) -> int:
        """Delete the key's stored messages; returns how many."""

    # --- public (broadcast) messages: their own mid sequence, not visible through any key ---
    async def save_public(self, msg: bytes, expire: int) -> int:
        """Assign the next public mid and store ``msg`` for ``expire`` seconds (0 = do not store)."""

    async def get_public(self, mid: int) -> FetchResult:
        """Public messages with mid > ``mid``, ascending (the oldest ones first when the reply is size-capped)."""

    # --- the tag/alias directory (message/directory.py); every call is idempotent ---
    async def set_tags(self, key: str, tags: Sequence[str]) -> list[str]:
        """Replace the key's tags (``[]`` clears them); returns them sorted."""

    async def set_alias(self, key: str, alias: str) -> dict[str, str | None]:
        """Give the key ``alias`` (moved from the key that had it; ``""`` removes the key's alias); returns
        ``{"alias": A or None, "moved_from": K1 or None, "replaced": the key's old alias or None}``."""

    async def key_info(self, key: str) -> dict[str, Any]:
        """``{"tags": [sorted], "alias": A or None}``."""

    async def alias_key(self, alias: str) -> str | None:
        """The key that has ``alias``, or None."""

    async def tag_keys(self, expr: Sequence[Sequence[str]], after: str, count: int) -> tuple[list[str], str | None]:
        """Up to ``count`` keys > ``after`` matching ``expr`` (OR of AND-groups), ascending, and the cursor to go
        on from (None: no more). A page may be short while the cursor is set: ask again from it."""

    async def ping(self) -> None:
        """Raise unless the node answers."""

    async def close(self) -> None:
        """Close the connection."""


class MessageClient(MessageAPI):
    """``MessageAPI`` over one MessagePack-RPC connection to a message node at ``host:port``."""

    def __init__(self, address: str, *, timeout: float = 3.0) -> None:
        self.address = address
        self._rpc = RpcClient(address, timeout=timeout)

    @property
    def connected(self) -> bool:
        """True while a connection to the node is open (a call would be written at once, without dialling)."""
        return self._rpc.connected

    async def save_private(self, key: str, msg: bytes, expire: int) -> int:
        reply = await self._rpc.call(f"{SERVICE}.SavePrivate", key, msg, expire)
        return _int(reply, "SavePrivate")

    async def save_privates(self, keys: Sequence[str], msg: bytes, expire: int) -> dict[str, int]:
        reply = await self._rpc.call(f"{SERVICE}.SavePrivates", list(keys), msg, expire)
        if not isinstance(reply, dict):
            raise _malformed("SavePrivates", reply)
        return {_str(key, "SavePrivates"): _int(mid, "SavePrivates") for key, mid in reply.items()}

    async def get_private(self, key: str, mid: int) -> FetchResult:
        return _fetch_result(await self._rpc.call(f"{SERVICE}.GetPrivate", key, mid), "GetPrivate")

    async def del_private(self, key: str) -> int:
        return _int(await self._rpc.call(f"{SERVICE}.DelPrivate", key), "DelPrivate")

    # --- public (broadcast) messages ---
    async def save_public(self, msg: bytes, expire: int) -> int:
        return _int(await self._rpc.call(f"{SERVICE}.SavePublic", msg, expire), "SavePublic")

    async def get_public(self, mid: int) -> FetchResult:
        return _fetch_result(await self._rpc.call(f"{SERVICE}.GetPublic", mid), "GetPublic")

    async def trace(self, records: list[Any]) -> int:
        """MessageRPC.Trace: a batch of delivery-trace records (message/trace_api.py); how many were kept."""
        return _int(await self._rpc.call(f"{SERVICE}.Trace", records), "Trace")

    async def trace_query(self, method: str, *params: Any) -> dict[str, Any]:
        """MessageRPC.MsgTrace / KeyTrace: a trace document."""
        reply = await self._rpc.call(f"{SERVICE}.{method}", *params)
        if not isinstance(reply, dict):
            raise _malformed(method, reply)
        return reply

    # --- the tag/alias directory ---
    async def set_tags(self, key: str, tags: Sequence[str]) -> list[str]:
        return _str_list(await self._rpc.call(f"{SERVICE}.SetTags", key, _packable(tags)), "SetTags")

    async def set_alias(self, key: str, alias: str) -> dict[str, str | None]:
        reply = await self._rpc.call(f"{SERVICE}.SetAlias", key, alias)
        if not isinstance(reply, dict):
            raise _malformed("SetAlias", reply)
        return {name: _str_or_none(reply.get(name), "SetAlias") for name in ("alias", "moved_from", "replaced")}

    async def key_info(self, key: str) -> dict[str, Any]:
        reply = await self._rpc.call(f"{SERVICE}.KeyInfo", key)
        if not isinstance(reply, dict):
            raise _malformed("KeyInfo", reply)
        return {"tags": _str_list(reply.get("tags"), "KeyInfo"), "alias": _str_or_none(reply.get("alias"), "KeyInfo")}

    async def alias_key(self, alias: str) -> str | None:
        return _str_or_none(await self._rpc.call(f"{SERVICE}.AliasKey", alias), "AliasKey")

    async def tag_keys(self, expr: Sequence[Sequence[str]], after: str, count: int) -> tuple[list[str], str | None]:
        groups = [_packable(group) for group in expr] if isinstance(expr, (list, tuple)) else expr
        reply = await self._rpc.call(f"{SERVICE}.TagKeys", groups, after, count)
        if not isinstance(reply, dict):
            raise _malformed("TagKeys", reply)
        return _str_list(reply.get("keys"), "TagKeys"), _str_or_none(reply.get("next"), "TagKeys")

    async def ping(self) -> None:
        reply = await self._rpc.call(f"{SERVICE}.Ping")
        if reply != "pong":
            raise _malformed("Ping", reply)

    async def close(self) -> None:
        await self._rpc.close()


def _packable(items: Any) -> Any:
    """A sequence msgpack can pack as an array; a str (a caller's mistake) is sent as is, for the node to refuse."""
    return items if isinstance(items, (str, bytes, list, tuple)) else list(items)


def _str_or_none(value: Any, method: str) -> str | None:
    if value is not None and not isinstance(value, str):
        raise _malformed(method, value)
    return value


def _str_list(value: Any, method: str) -> list[str]:
    if not isinstance(value, list) or not all(isinstance(item, str) for item in value):
        raise _malformed(method, value)
    return value


def _int(value: Any, method: str) -> int:
    if not isinstance(value, int) or isinstance(value, bool):
        raise _malformed(method, value)
    return value


def _str(value: Any, method: str) -> str:
    if not isinstance(value, str):
        raise _malformed(method, value)
    return value


def _fetch_result(reply: Any, method: str) -> FetchResult:
    """A GetPrivate / GetPublic reply ``{"msgs": [[mid, msg], ...], "trimmed": bool}`` as a FetchResult."""
    if not isinstance(reply, dict) or not isinstance(reply.get("msgs"), list) \
            or not isinstance(reply.get("trimmed"), bool):
        raise _malformed(method, reply)
    msgs: list[tuple[int, bytes]] = []
    for item in reply["msgs"]:
        if not isinstance(item, (list, tuple)) or len(item) != 2 or not isinstance(item[1], bytes):
            raise _malformed(method, item)
        msgs.append((_int(item[0], method), item[1]))
    return FetchResult(msgs, reply["trimmed"])


def _malformed(method: str, value: Any) -> RemoteError:
    return RemoteError(ERR_INTERNAL, f"malformed {SERVICE}.{method} reply: {repr(value)[:80]}")
