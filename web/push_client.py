"""The Python server SDK: push to a pushcluster from a back end, over the web node's admin HTTP API.

::

    async with PushClient("http://127.0.0.1:8091", token=ADMIN_TOKEN, public_url="http://127.0.0.1:8090") as push:
        result = await push.push_private("alice", {"title": "hello"}, expire=600)   # PushResult(mid, online)
        failed = (await push.push_mprivate(["bob", "carol"], {"title": "hi"}, expire=600)).failed_keys
        await push.delete("alice")                      # stored messages deleted, connections closed
        await push.server_for("alice", "ws")            # "host:port" (public listener)
        page = await push.fetch("alice", mid=0)         # FetchPage(messages, trimmed) (public listener)

A message is either ``bytes`` — JSON text sent byte for byte, exactly what subscribers receive as
``Message.raw`` — or any other JSON value, encoded compactly (so a ``str`` becomes a JSON string). Connections
are kept alive between calls (``comet/subscriber_http.py``, which this module shares with the subscriber SDK);
``https://`` URLs use the system's trusted certificates, or ``ssl_context``.

Errors (all :class:`PushClusterError`; they come from ``comet/subscriber_api.py`` and are re-exported here):
:class:`NoNodeError` (ret 1001: no comet serves the key — during a failover, retry), :class:`BadParameterError`
(ret 65534, also raised before any request when an argument is invalid: ``status`` 0), :class:`ServerError`
(ret 65535 or an HTTP 5xx: a comet or message node could not be reached — retry), :class:`AuthError`
(HTTP 401: missing or wrong admin token), :class:`TransportError` (the web node could not be reached) and its
subclass :class:`RequestTimeout` (no answer in time: the push may or may not have been applied; a retry may
deliver it twice, each copy with its own mid).

Not in this SDK yet (each waits for its server side, see DESIGN.md section 8):

* ``push_all(message, expire)`` — broadcast, ``POST /push/all``;
* ``push_tags(tags, message, expire)`` — push to the keys of a tag;
* ``trace(key, mid)`` — a message's delivery trace, ``GET /msg/trace``.
"""
from __future__ import annotations

import json
import logging
import ssl
from dataclasses import dataclass
from typing import Any, Sequence
from urllib.parse import urlencode

from comet.subscriber_api import (
    ApiError, AuthError, BadParameterError, FetchPage, Message, NoNodeError, PushClusterError, RequestTimeout,
    ServerError, TransportError, parse_envelope,
)
from comet.subscriber_http import HttpClient, WebApi

__all__ = ["PushClient", "PushResult", "MultiPushResult", "DeleteResult", "FetchPage", "Message",
           "PushClusterError", "ApiError", "NoNodeError", "BadParameterError", "ServerError", "AuthError",
           "TransportError", "RequestTimeout"]

log = logging.getLogger(__name__)

@dataclass(frozen=True, slots=True)
class PushResult:
    """A private push: the message's ``mid`` and the number of connections it was written to (0 = offline)."""

    mid: int
    online: int


@dataclass(frozen=True, slots=True)
class MultiPushResult:
    """A push to many keys: the keys that were not pushed, in request order (empty on full success)."""

    failed_keys: list[str]


@dataclass(frozen=True, slots=True)
class DeleteResult:
    """``deleted`` stored messages; ``closed`` connections (None when the comet could not be asked)."""

    deleted: int
    closed: int | None


def encode_message(message: Any) -> bytes:
    """The JSON text of ``message``: bytes as they are, anything else JSON-encoded compactly."""
    if isinstance(message, (bytes, bytearray, memoryview)):
        return bytes(message)
    try:
        return json.dumps(message, ensure_ascii=False, allow_nan=False, separators=(",", ":")).encode("utf-8")
    except (TypeError, ValueError) as exc:
        raise BadParameterError(f"message is not JSON-encodable: {exc}", status=0) from None


def _check_key(key: Any) -> str:
    if not isinstance(key, str) or not key:
        raise BadParameterError("key must be a non-empty string", status=0)
    return key


def _check_expire(expire: Any) -> int:
    if type(expire) is not int or expire < 0:
        raise BadParameterError(f"expire must be an integer >= 0 (seconds), not {expire!r:.40}", status=0)
    return int(expire)


def _int(data: dict[str, Any], name: str) -> int:
    value = data.get(name)
    if type(value) is not int:
        raise ServerError(f"reply without an integer {name!r}: {data!r:.80}")
    return int(value)


class PushClient:
    """Admin API client of one web node (``admin_url``); ``public_url`` for :meth:`server_for` / :meth:`fetch`."""

    def __init__(self, admin_url: str, *, token: str | None = None, public_url: str | None = None,
                 timeout: float = 10.0, max_idle: int = 4, ssl_context: ssl.SSLContext | None = None) -> None:
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        self._admin = HttpClient(admin_url, timeout=timeout, max_idle=max_idle, headers=headers,
                                 ssl_context=ssl_context)
        self._public = WebApi(HttpClient(public_url, timeout=timeout, max_idle=max_idle, ssl_context=ssl_context)) \
            if public_url else None

    async def __aenter__(self) -> PushClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def push_private(self, key: str, message: Any, expire: int) -> PushResult:
        """Push ``message`` to every connection of ``key``; store it for ``expire`` seconds (0 = online only)."""
        body = encode_message(message)
        data = await self._post("/push/private", {"key": _check_key(key), "expire": _check_expire(expire)}, body)
        result = PushResult(_int(data, "mid"), _int(data, "online"))
        log.debug("key=%s mid=%d: pushed, written to %d connection(s)", key, result.mid, result.online)
        return result

    async def push_mprivate(self, keys: Sequence[str], message: Any, expire: int) -> MultiPushResult:
        """Push one message to many keys (at most the node's ``limits.max_keys_per_push``, 1000 by default)."""
        if isinstance(keys, str) or not keys:
            raise BadParameterError("keys must be a non-empty list of keys", status=0)
        for key in keys:
            if "," in _check_key(key):
                raise BadParameterError(f"key {key!r:.40} contains ',' (the list separator)", status=0)
        try:
            text = encode_message(message).decode("utf-8")
        except UnicodeDecodeError:
            raise BadParameterError("message is not UTF-8", status=0) from None
        body = json.dumps({"m": text, "k": ",".join(keys)}, ensure_ascii=False).encode("utf-8")
        data = await self._post("/push/mprivate", {"expire": _check_expire(expire)}, body)
        failed = data.get("fk")
        if not isinstance(failed, list) or not all(isinstance(key, str) for key in failed):
            raise ServerError(f"mprivate reply without a list of failed keys: {data!r:.80}")
        if failed:
            log.info("mprivate: %d of %d key(s) failed, e.g. key=%s", len(failed), len(keys), failed[0])
        return MultiPushResult(failed)

    async def delete(self, key: str) -> DeleteResult:
        """Delete the stored messages of ``key`` and close its connections."""
        body = urlencode({"key": _check_key(key)}).encode("ascii")
        data = await self._post("/msg/del", None, body, "application/x-www-form-urlencoded")
        closed = data.get("closed")
        result = DeleteResult(_int(data, "deleted"), closed if type(closed) is int else None)
        log.info("key=%s: %d stored message(s) deleted, %s connection(s) closed", key, result.deleted, closed)
        return result

    async def server_for(self, key: str, proto: str = "tcp") -> str:
        """``host:port`` of the comet that serves ``key`` for ``proto`` ("tcp" or "ws")."""
        host, port = await self._public_api().server_for(_check_key(key), proto)
        return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"

    async def fetch(self, key: str, mid: int = 0) -> FetchPage:
        """One page of the stored messages of ``key`` after ``mid``, ascending. A page is bounded in bytes: ask
        again from ``page.messages[-1].mid`` until a page is empty."""
        if type(mid) is not int or mid < 0:
            raise BadParameterError(f"mid must be an integer >= 0, not {mid!r:.40}", status=0)
        return await self._public_api().fetch(_check_key(key), mid)

    async def close(self) -> None:
        await self._admin.close()
        if self._public is not None:
            await self._public.http.close()

    def _public_api(self) -> WebApi:
        if self._public is None:
            raise ValueError("this PushClient has no public_url")
        return self._public

    async def _post(self, path: str, query: dict[str, str | int] | None, body: bytes,
                    content_type: str = "application/json") -> dict[str, Any]:
        response = await self._admin.request("POST", path, query=query, body=body,
                                             headers={"Content-Type": content_type})
        return parse_envelope(response.status, response.body)
