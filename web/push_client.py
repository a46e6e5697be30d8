"""The Python server SDK: push to a pushcluster from a back end, over the web node's admin HTTP API.

::

    async with PushClient("http://127.0.0.1:8091", token=ADMIN_TOKEN, public_url="http://127.0.0.1:8090") as push:
        result = await push.push_private("alice", {"title": "hello"}, expire=600)   # PushResult(mid, online, ...)
        acked = await push.push_private("alice", {"t": 1}, 600, wait="acked", timeout=5)  # .outcome == "acked"
        failed = (await push.push_mprivate(["bob", "carol"], {"title": "hi"}, expire=600)).failed_keys
        await push.push_all({"title": "to everyone"}, expire=600)          # BroadcastResult(mid, online, failed_comets)
        await push.set_tags("alice", ["beta", "android"]); await push.set_alias("alice", "alice@example.com")
        await push.push_tags([["beta", "android"], ["staff"]], {"t": 2}, expire=600)   # TagPushResult
        await push.push_alias("alice@example.com", {"t": 3}, expire=600)   # PushResult(..., key="alice")
        trace = await push.msg_trace("alice", result.mid)                  # MessageTrace(..., state="acked")
        await push.delete("alice")                      # stored messages deleted, connections closed
        page = await push.fetch("alice", mid=0)         # FetchPage(messages, trimmed) (public listener)

A message is either ``bytes`` — JSON text sent byte for byte, exactly what subscribers receive as
``Message.raw`` — or any other JSON value, encoded compactly (so a ``str`` becomes a JSON string). Connections
are kept alive between calls (``comet/subscriber_http.py``, which this module shares with the subscriber SDK);
``https://`` URLs use the system's trusted certificates, or ``ssl_context``. ``wait="written"`` / ``"acked"``
(with ``timeout`` seconds for ``acked``) makes a push answer with the outcome of each key: ``acked``, ``written``,
``offline`` or ``timeout``; the HTTP timeout of such a call is the client's plus the wait. The results are frozen
dataclasses (``web/push_results.py``).

Errors (all :class:`PushClusterError`; they come from ``comet/subscriber_api.py`` and are re-exported here):
:class:`NoNodeError` (ret 1001: no comet serves the key — during a failover, retry; for ``push_alias`` also "no
key has this alias"), :class:`BadParameterError` (ret 65534, also raised before any request when an argument is
invalid: ``status`` 0), :class:`ServerError` (ret 65535 or an HTTP 5xx: a comet or message node could not be
reached — retry), :class:`AuthError` (HTTP 401: missing or wrong admin token), :class:`TransportError` (the web
node could not be reached) and its subclass :class:`RequestTimeout` (no answer in time: the push may or may not
have been applied; a retry may deliver it twice, each copy with its own mid).
"""
from __future__ import annotations

import json
import logging
import ssl
from typing import Any, Sequence
from urllib.parse import urlencode

from comet.subscriber_api import (
    ApiError, AuthError, BadParameterError, FetchPage, Message, NoNodeError, PushClusterError, RequestTimeout,
    ServerError, TransportError, parse_envelope,
)
from comet.subscriber_http import HttpClient, WebApi
from web.push_results import (
    AliasChange, BroadcastResult, DeleteResult, KeyInfo, KeyTags, KeyTrace, MessageTrace, MultiPushResult,
    PushResult, TagKeysPage, TagPushResult,
)

__all__ = ["PushClient", "PushResult", "MultiPushResult", "TagPushResult", "BroadcastResult", "DeleteResult",
           "KeyTags", "AliasChange", "KeyInfo", "TagKeysPage", "MessageTrace", "KeyTrace", "FetchPage", "Message",
           "PushClusterError", "ApiError", "NoNodeError", "BadParameterError", "ServerError", "AuthError",
           "TransportError", "RequestTimeout"]

log = logging.getLogger(__name__)

WAITS = ("acked", "written")
WAIT_MAX = 30.0            # the web node's default [limits] push_wait_max: added to the HTTP timeout of a wait
MAX_TAG_GROUPS, MAX_GROUP_TAGS = 16, 8   # a tag expression: 1..16 AND-groups of 1..8 tags


def encode_message(message: Any) -> bytes:
    """The JSON text of ``message``: bytes as they are, anything else JSON-encoded compactly."""
    if isinstance(message, (bytes, bytearray, memoryview)):
        return bytes(message)
    try:
        return json.dumps(message, ensure_ascii=False, allow_nan=False, separators=(",", ":")).encode("utf-8")
    except (TypeError, ValueError) as exc:
        raise BadParameterError(f"message is not JSON-encodable: {exc}", status=0) from None


def _message_text(message: Any) -> str:
    try:
        return encode_message(message).decode("utf-8")
    except UnicodeDecodeError:
        raise BadParameterError("message is not UTF-8", status=0) from None


def _check_key(key: Any, name: str = "key") -> str:
    if not isinstance(key, str) or not key:
        raise BadParameterError(f"{name} must be a non-empty string", status=0)
    return key


def _check_expire(expire: Any) -> int:
    if type(expire) is not int or expire < 0:
        raise BadParameterError(f"expire must be an integer >= 0 (seconds), not {expire!r:.40}", status=0)
    return int(expire)


def _check_expr(expr: Any) -> list[list[str]]:
    """A tag expression: a list of 1..16 AND-groups, each a list of 1..8 tags (the web node checks the tags)."""
    if not isinstance(expr, (list, tuple)) or not 1 <= len(expr) <= MAX_TAG_GROUPS or not all(
            isinstance(group, (list, tuple)) and 1 <= len(group) <= MAX_GROUP_TAGS
            and all(isinstance(tag, str) and tag for tag in group) for group in expr):
        raise BadParameterError(f"a tag expression is a list of 1..{MAX_TAG_GROUPS} lists of 1..{MAX_GROUP_TAGS} "
                                f"tags, e.g. [[\"beta\", \"android\"], [\"staff\"]]; not {expr!r:.60}", status=0)
    return [list(group) for group in expr]


def _wait_query(wait: str | None, timeout: float | None) -> dict[str, str | int]:
    """The ``wait`` / ``timeout`` query parameters (none without ``wait``)."""
    if wait is None:
        if timeout is not None:
            raise BadParameterError("timeout is only valid with wait", status=0)
        return {}
    if wait not in WAITS:
        raise BadParameterError(f"wait must be {' or '.join(WAITS)}, not {wait!r:.20}", status=0)
    query: dict[str, str | int] = {"wait": wait}
    if timeout is not None:
        if isinstance(timeout, bool) or not isinstance(timeout, (int, float)) or not 0.001 <= timeout <= 9999:
            raise BadParameterError(f"timeout must be 0.001..9999 seconds, not {timeout!r:.20}", status=0)
        query["timeout"] = f"{timeout:.3f}".rstrip("0").rstrip(".")
    return query


class PushClient:
    """Admin API client of one web node (``admin_url``); ``public_url`` for :meth:`server_for` / :meth:`fetch`."""

    def __init__(self, admin_url: str, *, token: str | None = None, public_url: str | None = None,
                 timeout: float = 10.0, max_idle: int = 4, ssl_context: ssl.SSLContext | None = None) -> None:
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        self.timeout = timeout
        self._admin = HttpClient(admin_url, timeout=timeout, max_idle=max_idle, headers=headers,
                                 ssl_context=ssl_context)
        self._public = WebApi(HttpClient(public_url, timeout=timeout, max_idle=max_idle, ssl_context=ssl_context)) \
            if public_url else None

    async def __aenter__(self) -> PushClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    # -- pushes --------------------------------------------------------------------------------------------------

    async def push_private(self, key: str, message: Any, expire: int, wait: str | None = None,
                           timeout: float | None = None) -> PushResult:
        """Push ``message`` to every connection of ``key``; store it for ``expire`` seconds (0 = online only)."""
        query = {"key": _check_key(key), "expire": _check_expire(expire), **_wait_query(wait, timeout)}
        data = await self._post("/push/private", query, encode_message(message), wait=timeout)
        result = PushResult.from_data(data)
        log.debug("key=%s mid=%d: pushed, written to %d connection(s), outcome %s", key, result.mid, result.online,
                  result.outcome)
        return result

    async def push_mprivate(self, keys: Sequence[str], message: Any, expire: int, wait: str | None = None,
                            timeout: float | None = None) -> MultiPushResult:
        """Push one message to many keys (at most the node's ``limits.max_keys_per_push``, 1000 by default)."""
        if isinstance(keys, str) or not keys:
            raise BadParameterError("keys must be a non-empty list of keys", status=0)
        for key in keys:
            if "," in _check_key(key):
                raise BadParameterError(f"key {key!r:.40} contains ',' (the list separator)", status=0)
        body = json.dumps({"m": _message_text(message), "k": ",".join(keys)}, ensure_ascii=False).encode("utf-8")
        query = {"expire": _check_expire(expire), **_wait_query(wait, timeout)}
        result = MultiPushResult.from_data(await self._post("/push/mprivate", query, body, wait=timeout))
        if result.failed_keys:
            log.info("mprivate: %d of %d key(s) failed, e.g. key=%s", len(result.failed_keys), len(keys),
                     result.failed_keys[0])
        return result

    async def push_all(self, message: Any, expire: int) -> BroadcastResult:
        """Broadcast ``message`` to every connection of every comet (public message, gid 1); stored ``expire``
        seconds for clients that fetch it later (``last_pmid``)."""
        data = await self._post("/push/all", {"expire": _check_expire(expire)}, encode_message(message))
        result = BroadcastResult.from_data(data)
        log.info("pmid=%d: broadcast to %d connection(s), %d comet(s) failed", result.mid, result.online,
                 len(result.failed_comets))
        return result

    async def push_tags(self, expr: Sequence[Sequence[str]], message: Any, expire: int, wait: str | None = None,
                        timeout: float | None = None) -> TagPushResult:
        """Push ``message`` to every key the tag expression names: an OR of AND-groups, e.g.
        ``[["beta", "android"], ["staff"]]`` = (beta AND android) OR staff."""
        body = json.dumps({"m": _message_text(message), "tags": _check_expr(expr)}, ensure_ascii=False)
        query = {"expire": _check_expire(expire), **_wait_query(wait, timeout)}
        result = TagPushResult.from_data(await self._post("/push/tags", query, body.encode("utf-8"), wait=timeout))
        log.info("tags=%s: pushed to %d key(s), %d failed", json.dumps(expr)[:80], result.keys,
                 len(result.failed_keys))
        return result

    async def push_alias(self, alias: str, message: Any, expire: int, wait: str | None = None,
                         timeout: float | None = None) -> PushResult:
        """Push ``message`` to the key that has ``alias`` (``result.key``); NoNodeError (1001) when none has it."""
        query = {"alias": _check_key(alias, "alias"), "expire": _check_expire(expire), **_wait_query(wait, timeout)}
        result = PushResult.from_data(await self._post("/push/alias", query, encode_message(message), wait=timeout))
        log.debug("alias=%s key=%s mid=%d: pushed", alias, result.key, result.mid)
        return result

    # -- tags and aliases ----------------------------------------------------------------------------------------

    async def set_tags(self, key: str, tags: Sequence[str]) -> KeyTags:
        """Replace the tags of ``key`` (``[]`` clears them); the key's tags, sorted."""
        if isinstance(tags, str) or not all(isinstance(tag, str) for tag in tags):
            raise BadParameterError("tags must be a list of strings", status=0)
        body = json.dumps(list(tags), ensure_ascii=False).encode("utf-8")
        return KeyTags.from_data(await self._post("/key/tags", {"key": _check_key(key)}, body))

    async def set_alias(self, key: str, alias: str) -> AliasChange:
        """Give ``key`` the alias (taken from the key that had it; ``""`` removes the key's alias)."""
        if not isinstance(alias, str):
            raise BadParameterError("alias must be a string ('' removes it)", status=0)
        change = AliasChange.from_data(await self._post("/key/alias", {"key": _check_key(key), "alias": alias}, b""))
        if change.moved_from is not None:
            log.info("key=%s alias=%s: moved from key=%s", key, alias, change.moved_from)
        return change

    async def key_info(self, key: str) -> KeyInfo:
        """The tags and alias of ``key``."""
        return KeyInfo.from_data(await self._get("/key/info", {"key": _check_key(key)}))

    async def alias_key(self, alias: str) -> str | None:
        """The key that has ``alias``; None when no key has it."""
        try:
            data = await self._get("/alias/get", {"alias": _check_key(alias, "alias")})
        except NoNodeError:
            return None
        key = data.get("key")
        if not isinstance(key, str):
            raise ServerError(f"alias/get reply without a key: {data!r:.80}")
        return key

    async def tag_keys(self, expr: Sequence[Sequence[str]], after: str = "", count: int = 100) -> TagKeysPage:
        """One page of the keys the tag expression names, ascending, after ``after``; the next page is
        ``tag_keys(expr, page.next)`` until ``page.next`` is None."""
        if not isinstance(after, str) or type(count) is not int or not 1 <= count <= 1000:
            raise BadParameterError("after must be a string and count 1..1000", status=0)
        query: dict[str, str | int] = {"tags": json.dumps(_check_expr(expr), ensure_ascii=False), "after": after,
                                       "count": count}
        return TagKeysPage.from_data(await self._get("/tag/keys", query))

    # -- traces, deletes, the public listener --------------------------------------------------------------------

    async def msg_trace(self, key: str, mid: int) -> MessageTrace:
        """What happened to message ``mid`` of ``key``: events and verdict (``state`` "acked", "delivered", ...)."""
        if type(mid) is not int or mid < 1:
            raise BadParameterError(f"mid must be an integer >= 1, not {mid!r:.40}", status=0)
        return MessageTrace.from_data(await self._get("/msg/trace", {"key": _check_key(key), "mid": mid}))

    async def key_trace(self, key: str) -> KeyTrace:
        """The connections, recent messages, failed pushes, fetches and deletes of ``key``."""
        return KeyTrace.from_data(await self._get("/key/trace", {"key": _check_key(key)}))

    async def delete(self, key: str) -> DeleteResult:
        """Delete the stored messages of ``key`` and close its connections."""
        body = urlencode({"key": _check_key(key)}).encode("ascii")
        data = await self._post("/msg/del", None, body, "application/x-www-form-urlencoded")
        closed, deleted = data.get("closed"), data.get("deleted")
        if type(deleted) is not int:
            raise ServerError(f"reply without an integer 'deleted': {data!r:.80}")
        result = DeleteResult(deleted, closed if type(closed) is int else None)
        log.info("key=%s: %d stored message(s) deleted, %s connection(s) closed", key, result.deleted, closed)
        return result

    async def server_for(self, key: str, proto: str = "tcp") -> str:
        """``host:port`` of the comet that serves ``key`` for ``proto`` ("tcp" or "ws")."""
        host, port = await self._public_api().server_for(_check_key(key), proto)
        return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"

    async def fetch(self, key: str, mid: int = 0, pmid: int | None = None) -> FetchPage:
        """One page of the stored messages of ``key`` after ``mid``, ascending (with ``pmid`` also the public
        messages after it, ``page.public``). A page is bounded in bytes: ask again from the last mid until a page
        is empty."""
        for name, value in (("mid", mid), ("pmid", 0 if pmid is None else pmid)):
            if type(value) is not int or value < 0:
                raise BadParameterError(f"{name} must be an integer >= 0, not {value!r:.40}", status=0)
        return await self._public_api().fetch(_check_key(key), mid, pmid)

    async def close(self) -> None:
        await self._admin.close()
        if self._public is not None:
            await self._public.http.close()

    def _public_api(self) -> WebApi:
        if self._public is None:
            raise ValueError("this PushClient has no public_url")
        return self._public

    async def _post(self, path: str, query: dict[str, str | int] | None, body: bytes,
                    content_type: str = "application/json", wait: float | None = None) -> dict[str, Any]:
        """POST to the admin listener; ``wait`` (seconds, or WAIT_MAX when a wait has no timeout) is added to the
        HTTP timeout of a push that waits for its outcome."""
        timeout = self.timeout + (wait or WAIT_MAX) if query and "wait" in query else None
        response = await self._admin.request("POST", path, query=query, body=body,
                                             headers={"Content-Type": content_type}, timeout=timeout)
        return parse_envelope(response.status, response.body)

    async def _get(self, path: str, query: dict[str, str | int]) -> dict[str, Any]:
        response = await self._admin.request("GET", path, query=query)
        return parse_envelope(response.status, response.body)
