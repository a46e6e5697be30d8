"""MessageRPC: the message node's MessagePack-RPC methods (registered as ``MessageRPC.<Method>``).

Thin: every method hands its params to the ``Storage`` and maps the two ways a call fails. A bad argument
(``storage.InvalidArgument``, also for a param of the wrong type) becomes ``RpcError(ERR_PARAM, reason)``, which the
``RpcServer`` logs at WARNING; an unreachable store becomes ``RpcError(ERR_INTERNAL, "storage unavailable")``,
with the cause (shard, Redis error) logged here at ERROR.
``msg`` is the message's raw bytes; a ``str`` (from a client that packs bytes as msgpack str) is taken as UTF-8.

With a ``message.trace_service.MessageTracer`` the service also records each delete in the delivery trace, takes
the trace batches of comet and web nodes (``Trace``) and answers the trace queries (``MsgTrace``, ``KeyTrace``;
65535 "tracing is disabled" without a tracer).
"""
from __future__ import annotations

import logging
from typing import Any, Awaitable, TypeVar

from message.storage import PUBLIC_LOG_KEY, FetchResult, InvalidArgument, Storage, StorageUnavailable
from message.trace_service import MessageTracer
from message.directory import Directory, describe
from thirdparty.rpc_codec import ERR_INTERNAL, ERR_PARAM, RpcError

log = logging.getLogger(__name__)
T = TypeVar("T")

DEFAULT_MAX_FETCH_BYTES = 960 * 1024
MSG_ENTRY_OVERHEAD = 16  # msgpack bytes around one [mid, msg] pair in a GetPrivate reply, rounded up


class MessageRPC:
    """The MessageRPC service: SavePrivate, SavePrivates, GetPrivate, DelPrivate, Ping, the trace methods, and
    SavePublic / GetPublic (public messages)."""

    RPC_METHODS = ("SavePrivate", "SavePrivates", "GetPrivate", "DelPrivate", "Ping", "Trace", "MsgTrace", "KeyTrace",
                   "SavePublic", "GetPublic",
                   "SetTags", "SetAlias", "KeyInfo", "AliasKey", "TagKeys")  # the tag/alias directory

    def __init__(self, storage: Storage, *, max_fetch_bytes: int = DEFAULT_MAX_FETCH_BYTES,
                 tracer: MessageTracer | None = None, directory: Directory | None = None) -> None:
        self._storage = storage
        self._max_fetch_bytes = max_fetch_bytes
        self._tracer = tracer
        self._directory = directory  # the tag/alias directory (message/directory.py); None: 65535

    async def SavePrivate(self, key: Any, msg: Any, expire: Any) -> int:
        """Assign ``key``'s next mid (returned) and store ``msg`` for ``expire`` seconds when ``expire > 0``."""
        mid = await _call("SavePrivate", key, self._storage.save(key, _payload(msg), expire))
        log.debug("key=%s mid=%d expire=%s: saved", key, mid, expire)
        return mid

    async def SavePrivates(self, keys: Any, msg: Any, expire: Any) -> dict[str, int]:
        """Save one message for many keys; return ``{key: mid}`` for the keys saved.

        A key missing from the result was not saved (its storage shard failed): the caller reports it as
        failed (the comet's ``fk``). Duplicate keys are saved once. A bad argument fails the whole call.
        """
        first = keys[0] if isinstance(keys, list) and keys else "-"
        saved = await _call("SavePrivates", first, self._storage.save_many(keys, _payload(msg), expire))
        failed = [key for key in dict.fromkeys(keys) if key not in saved]
        if failed:
            log.warning("key=%s: SavePrivates did not save %d of %d keys (this one first)",
                        failed[0], len(failed), len(failed) + len(saved))
        if log.isEnabledFor(logging.DEBUG):
            for key, mid in saved.items():
                log.debug("key=%s mid=%d expire=%s: saved", key, mid, expire)
        return saved

    async def GetPrivate(self, key: Any, mid: Any) -> dict[str, Any]:
        """``{"msgs": [[mid, msg], ...], "trimmed": bool}``: messages newer than ``mid``, ascending.

        The reply holds the oldest of them up to ``max_fetch_bytes`` of payload (at least one message), so it
        stays under the RPC frame limit; the reader asks again from the last mid it received.
        """
        result: FetchResult = await _call("GetPrivate", key, self._storage.fetch(key, mid))
        msgs = _within(result.msgs, self._max_fetch_bytes)
        if len(msgs) < len(result.msgs):
            log.info("key=%s mid=%d: reply holds %d of %d messages (max_fetch_bytes)",
                     key, mid, len(msgs), len(result.msgs))
        return {"msgs": msgs, "trimmed": result.trimmed}

    async def DelPrivate(self, key: Any) -> int:
        """Delete ``key``'s stored messages (its mids keep increasing); return how many were deleted."""
        count = await _call("DelPrivate", key, self._storage.delete(key))
        if self._tracer is not None:
            self._tracer.deleted(key, count)
        log.info("key=%s: deleted %d stored messages", key, count)
        return count

    async def Ping(self) -> str:
        return "pong"

    async def Trace(self, records: Any) -> int:
        """Take a batch of trace records ``[[key, mid, packed record], ...]``; return how many were kept (bad
        records are dropped; without tracing, all of them)."""
        if self._tracer is None:
            return 0
        try:
            return self._tracer.intake(records)
        except InvalidArgument as exc:
            raise RpcError(ERR_PARAM, str(exc)) from None

    async def MsgTrace(self, key: Any, mid: Any) -> dict[str, Any]:
        """The trace of one message: its events and verdict (message/trace_service.py)."""
        return await _call("MsgTrace", key, self._traced().message_trace(key, mid))

    async def KeyTrace(self, key: Any) -> dict[str, Any]:
        """The trace of one key: connections, failures, fetches and its recent messages' verdicts."""
        return await _call("KeyTrace", key, self._traced().key_trace(key))

    # --- public (broadcast) messages ------------------------------------------------------------------------

    async def SavePublic(self, msg: Any, expire: Any) -> int:
        """Assign the next public mid (returned) and store ``msg`` for ``expire`` seconds when ``expire > 0``."""
        mid = await _call("SavePublic", PUBLIC_LOG_KEY, self._storage.save_public(_payload(msg), expire))
        log.info("key=%s mid=%d expire=%s: public message saved", PUBLIC_LOG_KEY, mid, expire)
        return mid

    async def GetPublic(self, mid: Any) -> dict[str, Any]:
        """``{"msgs": [[mid, msg], ...], "trimmed": bool}``: public messages newer than ``mid``, ascending, within
        ``max_fetch_bytes`` of payload (at least one), as ``GetPrivate``."""
        result: FetchResult = await _call("GetPublic", PUBLIC_LOG_KEY, self._storage.fetch_public(mid))
        msgs = _within(result.msgs, self._max_fetch_bytes)
        if len(msgs) < len(result.msgs):
            log.info("key=%s mid=%d: reply holds %d of %d public messages (max_fetch_bytes)",
                     PUBLIC_LOG_KEY, mid, len(msgs), len(result.msgs))
        return {"msgs": msgs, "trimmed": result.trimmed}

    # --- the tag/alias directory (message/directory.py) -----------------------------------------------------

    async def SetTags(self, key: Any, tags: Any) -> list[str]:
        """Replace ``key``'s tags (``[]`` clears them); return them sorted."""
        stored = await _call("SetTags", key, self._directory_().set_tags(key, tags))
        log.info("key=%s: %d tags set", key, len(stored))
        return stored

    async def SetAlias(self, key: Any, alias: Any) -> dict[str, Any]:
        """Give ``key`` the alias (moving it from the key that had it); ``""`` removes the key's alias.
        ``{"alias": A or None, "moved_from": K1 or None, "replaced": the key's old alias or None}``."""
        change = await _call("SetAlias", key, self._directory_().set_alias(key, alias))
        log.info("key=%s alias=%s: alias set (moved from %s, replaced %s)", key, change.alias or "-",
                 change.moved_from or "-", change.replaced or "-")
        return {"alias": change.alias, "moved_from": change.moved_from, "replaced": change.replaced}

    async def KeyInfo(self, key: Any) -> dict[str, Any]:
        """``{"tags": [sorted], "alias": A or None}`` of ``key``."""
        info = await _call("KeyInfo", key, self._directory_().key_info(key))
        return {"tags": info.tags, "alias": info.alias}

    async def AliasKey(self, alias: Any) -> str | None:
        """The key that has ``alias``, or None."""
        return await _call("AliasKey", "-", self._directory_().alias_key(alias))

    async def TagKeys(self, expr: Any, after: Any, count: Any) -> dict[str, Any]:
        """``{"keys": [ascending, > after], "next": the key to continue after, or None when there are no more}``
        for a tag expression (a list of AND-groups, each a list of tags); a page may be short while ``next`` is
        set (the store bounds its work per call)."""
        page = await _call("TagKeys", "-", self._directory_().tag_keys(expr, after, count))
        log.debug("key=- tags=%s after=%s: %d keys, next=%s", describe(expr), after, len(page.keys), page.next)
        return {"keys": page.keys, "next": page.next}

    def _directory_(self) -> Directory:
        if self._directory is None:
            raise RpcError(ERR_INTERNAL, "the tag/alias directory is not available on this message node")
        return self._directory

    def _traced(self) -> MessageTracer:
        if self._tracer is None:
            raise RpcError(ERR_INTERNAL, "tracing is disabled on this message node")
        return self._tracer


def _payload(msg: Any) -> Any:
    """Message bytes; a str is encoded as UTF-8, anything else is left for the storage check to reject."""
    return msg.encode("utf-8") if isinstance(msg, str) else msg


async def _call(method: str, key: Any, call: Awaitable[T]) -> T:
    """Await a storage call, mapping its failures to RPC errors; a store failure's cause is logged here."""
    try:
        return await call
    except InvalidArgument as exc:  # logged once by the RpcServer, with this reason
        raise RpcError(ERR_PARAM, str(exc)) from None
    except StorageUnavailable as exc:
        log.error("key=%s: %s failed: %s", key, method, exc)  # a validated key
        raise RpcError(ERR_INTERNAL, "storage unavailable") from None


def _within(msgs: list[tuple[int, bytes]], budget: int) -> list[list[Any]]:
    """The oldest messages whose payloads fit in ``budget`` bytes, as ``[mid, msg]`` pairs; at least one."""
    out: list[list[Any]] = []
    used = 0
    for mid, msg in msgs:
        used += len(msg) + MSG_ENTRY_OVERHEAD
        if out and used > budget:
            break
        out.append([mid, msg])
    return out
