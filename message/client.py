"""The message role's public face: the ``MessageAPI`` Protocol and ``MessageClient``, its MessagePack-RPC client.

Comet and web nodes import only this module (and, through it, ``message.storage``'s ``FetchResult``, which has
no I/O). Calls raise ``thirdparty.rpc_client.RpcUnavailable`` (``RpcTimeout``) when the node cannot be reached
in time and ``RemoteError`` with the node's code (65534 bad parameter, 65535 storage unavailable) otherwise;
a reply of the wrong shape raises ``RemoteError(ERR_INTERNAL, ...)``.
"""
from __future__ import annotations

from typing import Any, Protocol, Sequence

from message.storage import FetchResult
from thirdparty.rpc_codec import ERR_INTERNAL
from thirdparty.rpc_client import RemoteError, RpcClient

__all__ = ["FetchResult", "MessageAPI", "MessageClient"]

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

    async def ping(self) -> None:
        """Raise unless the node answers."""

    async def close(self) -> None:
        """Close the connection."""


class MessageClient(MessageAPI):
    """``MessageAPI`` over one MessagePack-RPC connection to a message node at ``host:port``."""

    def __init__(self, address: str, *, timeout: float = 3.0) -> None:
        self.address = address
        self._rpc = RpcClient(address, timeout=timeout)

    async def save_private(self, key: str, msg: bytes, expire: int) -> int:
        reply = await self._rpc.call(f"{SERVICE}.SavePrivate", key, msg, expire)
        return _int(reply, "SavePrivate")

    async def save_privates(self, keys: Sequence[str], msg: bytes, expire: int) -> dict[str, int]:
        reply = await self._rpc.call(f"{SERVICE}.SavePrivates", list(keys), msg, expire)
        if not isinstance(reply, dict):
            raise _malformed("SavePrivates", reply)
        return {_str(key, "SavePrivates"): _int(mid, "SavePrivates") for key, mid in reply.items()}

    async def get_private(self, key: str, mid: int) -> FetchResult:
        reply = await self._rpc.call(f"{SERVICE}.GetPrivate", key, mid)
        if not isinstance(reply, dict) or not isinstance(reply.get("msgs"), list) \
                or not isinstance(reply.get("trimmed"), bool):
            raise _malformed("GetPrivate", reply)
        msgs: list[tuple[int, bytes]] = []
        for item in reply["msgs"]:
            if not isinstance(item, (list, tuple)) or len(item) != 2 or not isinstance(item[1], bytes):
                raise _malformed("GetPrivate", item)
            msgs.append((_int(item[0], "GetPrivate"), item[1]))
        return FetchResult(msgs, reply["trimmed"])

    async def del_private(self, key: str) -> int:
        return _int(await self._rpc.call(f"{SERVICE}.DelPrivate", key), "DelPrivate")

    async def ping(self) -> None:
        reply = await self._rpc.call(f"{SERVICE}.Ping")
        if reply != "pong":
            raise _malformed("Ping", reply)

    async def close(self) -> None:
        await self._rpc.close()


def _int(value: Any, method: str) -> int:
    if not isinstance(value, int) or isinstance(value, bool):
        raise _malformed(method, value)
    return value


def _str(value: Any, method: str) -> str:
    if not isinstance(value, str):
        raise _malformed(method, value)
    return value


def _malformed(method: str, value: Any) -> RemoteError:
    return RemoteError(ERR_INTERNAL, f"malformed {SERVICE}.{method} reply: {repr(value)[:80]}")
