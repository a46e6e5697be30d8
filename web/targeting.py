"""Pushes addressed by tag expression and by alias: ``POST /push/tags`` and ``POST /push/alias`` (admin listener).

``/push/tags`` resolves the expression to keys first, a page of 1000 at a time (``MessageAPI.tag_keys``, a
stateless cursor: every key comes once, in ascending order), and refuses with 65534 before anything is pushed when
it matches more than ``[limits] max_tag_keys``. The keys then go through the multi-key path of ``/push/mprivate``
(``PushMultiEndpoint.push_keys``: node by node, at most ``[limits] max_keys_per_push`` per comet call; a comet that
fails fails only its keys, listed in ``fk``). ``/push/alias`` asks the message node which key holds the alias
(``MessageAPI.alias_key``) and pushes to it as ``/push/private`` does. Both take ``wait`` / ``timeout`` like the
pushes they reuse. A bad parameter or body is 65534 with the reason as the envelope's ``msg``.
"""
from __future__ import annotations

import json
import logging
from typing import Awaitable

from web.admin import PushMultiEndpoint, PushPrivateEndpoint
from web.handlers import ApiRequest, Reply, rpc_call
from web.params import parse_expire, parse_message
from web.push_wait import PushWait, outcomes_json
from web.ret import InternalError, NoNodeError, ParamError, RetError, json_string
from web.target_params import MAX_PAGE, Expression, named, parse_name, parse_tags_push_body

log = logging.getLogger(__name__)

UNKNOWN_ALIAS = "no key has this alias"


def expression_text(expression: Expression) -> str:
    """The expression as compact JSON, for log lines."""
    return json.dumps(expression, ensure_ascii=False, separators=(",", ":"))


class PushTagsEndpoint(PushMultiEndpoint):
    """POST /push/tags?expire=S[&wait=acked|written[&timeout=S]], body {"m": "<message JSON>", "tags": [[...]]}
    -> {"keys": N, "online": C, "fk": [failed keys][, "outcomes": {key: O}]}."""

    def serve(self, request: ApiRequest) -> Awaitable[Reply]:
        limits = self.limits
        try:
            expire = parse_expire(request.arg("expire"), limits.max_expire)
            message, expression = parse_tags_push_body(request.body, limits.max_body_bytes)
            wait = self._wait(request)
        except ParamError as exc:
            raise named(exc) from None
        return self._push_tags(expression, message, expire, request.remote_ip, wait)

    async def _push_tags(self, expression: Expression, message: bytes, expire: int, src: str,
                         wait: PushWait | None) -> Reply:
        text = expression_text(expression)
        keys = await self.resolve(expression, text)
        if not keys:
            log.info("tags=%s: no key matches, nothing pushed", text)
            return b'{"keys":0,"online":0,"fk":[]%b}' % (b',"outcomes":{}' if wait is not None else b"")
        result = await self.push_keys(keys, message, expire, src, wait)
        log.info("tags=%s: %d key(s) on %d comet(s), %d connection(s), %d failed (e.g. key=%s), expire=%d", text,
                 len(keys), result.nodes, result.online, len(result.failed),
                 result.failed[0] if result.failed else "-", expire)
        failed = json.dumps(result.failed, ensure_ascii=False, separators=(",", ":")).encode("utf-8")
        reply = b'{"keys":%d,"online":%d,"fk":%b' % (len(keys), result.online, failed)
        if wait is not None:
            reply += b',"outcomes":%b' % outcomes_json(result.outcomes, keys)
        return reply + b"}"

    async def resolve(self, expression: Expression, text: str) -> list[str]:
        """Every key the expression matches, ascending; ParamError past ``[limits] max_tag_keys``."""
        limit = self.limits.max_tag_keys
        client = self.view.message_client()
        keys: list[str] = []
        after = ""
        while True:
            page, cursor = await rpc_call(f"tags={text} after={after!r}: message TagKeys",
                                          client.tag_keys(expression, after, MAX_PAGE))
            if page and (page[0] <= after or any(a >= b for a, b in zip(page, page[1:]))):
                raise InternalError(f"tags={text} after={after!r}: message TagKeys sent keys out of order")
            keys.extend(page)
            if len(keys) > limit:
                raise named(ParamError(f"tags={text} matches more than {limit} keys (limits.max_tag_keys)"))
            if cursor is None:
                return keys
            if cursor <= after:   # a page may be short, even empty, but the cursor moves on
                raise InternalError(f"tags={text} after={after!r}: message TagKeys cursor did not advance")
            after = cursor


class PushAliasEndpoint(PushPrivateEndpoint):
    """POST /push/alias?alias=A&expire=S[&wait=acked|written[&timeout=S]], body = the message JSON
    -> {"key": K, "mid": N, "online": C[, "outcome": O]}; an alias no key holds is ret 1001."""

    def serve(self, request: ApiRequest) -> Awaitable[Reply]:
        limits = self.limits
        try:
            value = request.arg("alias")
            if not value:
                raise ParamError("alias is missing")
            alias = parse_name(value, "alias")
            expire = parse_expire(request.arg("expire"), limits.max_expire)
            message = parse_message(request.body, limits.max_body_bytes)
            wait = self._wait(request)
        except ParamError as exc:
            raise named(exc) from None
        return self._push_alias(alias, message, expire, wait, request.remote_ip)

    async def _push_alias(self, alias: str, message: bytes, expire: int, wait: PushWait | None, src: str) -> Reply:
        key = await rpc_call(f"alias={alias}: message AliasKey", self.view.message_client().alias_key(alias))
        if key is None:
            raise NoNodeError(f"alias={alias}: {UNKNOWN_ALIAS}, nothing pushed", UNKNOWN_ALIAS)
        try:
            reply = await self.push(key, message, expire, wait, src)
        except RetError as exc:
            exc.reason = f"alias={alias} {exc.reason}"   # logged once by the request layer
            raise
        if log.isEnabledFor(logging.DEBUG):
            log.debug("alias=%s key=%s: pushed, expire=%d: %s", alias, key, expire, reply.decode("utf-8"))
        return b'{"key":%b,%b' % (json_string(key), reply[1:])
