"""The directory's admin endpoints: a key's tags and alias, and the lookups (admin listener, bearer token).

``POST /key/tags?key=K`` (body: JSON list of tags, ``[]`` clears), ``POST /key/alias?key=K&alias=A`` (``alias=``
removes the key's alias; an alias held by another key moves to K), ``GET /key/info?key=K``, ``GET /alias/get?alias=A``
(an alias no key holds is ret 1001), ``GET /tag/keys?tags=<expression JSON>&after=&count=`` (one page of the keys
an expression matches, ascending; ``next`` is the cursor for the following page, null after the last). Each is a
thin check of its inputs (``web/target_params.py``: 65534 with the reason as the envelope's ``msg``, nothing sent
on) and one call to a message node (``MessageAPI.set_tags`` ... ``tag_keys``; unreachable: 65535).
"""
from __future__ import annotations

import logging
from typing import Any, Awaitable, ClassVar, TypeVar

from web.cluster import ClusterView
from web.config import WebConfig
from web.handlers import ApiRequest, Endpoint, Reply, rpc_call
from web.params import parse_key, parse_query
from web.ret import InternalError, NoNodeError, ParamError, dumps
from web.target_params import (Expression, named, parse_alias_param, parse_count, parse_expression, parse_name,
                               parse_tag_list)
from web.targeting import UNKNOWN_ALIAS, PushAliasEndpoint, PushTagsEndpoint, expression_text
from web.tracing import WebTracer

log = logging.getLogger(__name__)

T = TypeVar("T")


async def directory_call(what: str, call: Awaitable[T]) -> T:
    """:func:`web.handlers.rpc_call`; a parameter the message node refused keeps its reason as the ``msg``."""
    try:
        return await rpc_call(what, call)
    except ParamError as exc:
        raise named(exc) from None


def _optional_str(doc: Any, name: str, what: str) -> str | None:
    value = doc.get(name) if isinstance(doc, dict) else None
    if value is not None and not isinstance(value, str):
        raise InternalError(f"{what}: {name} is not a string or null")
    return value


def _reply(data: dict[str, Any]) -> bytes:
    return dumps(data).encode("utf-8")


class DirectoryEndpoint(Endpoint):
    """Base of the directory endpoints: admin token (when configured), plain JSON, inputs named when bad."""

    admin: ClassVar[bool] = True

    def serve(self, request: ApiRequest) -> Awaitable[Reply]:
        try:
            return self.start(request)
        except ParamError as exc:
            raise named(exc) from None

    def start(self, request: ApiRequest) -> Awaitable[Reply]:
        raise NotImplementedError

    def key(self, request: ApiRequest) -> str:
        return parse_key(request.arg("key"), self.limits.max_key_bytes)


class KeyTagsEndpoint(DirectoryEndpoint):
    """POST /key/tags?key=K, body ["t1", ...] -> {"key": K, "tags": [sorted]}."""

    method: ClassVar[str] = "POST"

    def start(self, request: ApiRequest) -> Awaitable[Reply]:
        key = self.key(request)
        return self._set(key, parse_tag_list(request.body, self.limits.max_body_bytes))

    async def _set(self, key: str, tags: list[str]) -> Reply:
        stored = await directory_call(f"key={key}: message SetTags",
                                      self.view.message_client().set_tags(key, tags))
        log.info("key=%s: %d tag(s) set", key, len(stored))
        return _reply({"key": key, "tags": list(stored)})


class KeyAliasEndpoint(DirectoryEndpoint):
    """POST /key/alias?key=K&alias=A (empty: remove) -> {"key", "alias", "moved_from", "replaced"}."""

    method: ClassVar[str] = "POST"

    def start(self, request: ApiRequest) -> Awaitable[Reply]:
        key = self.key(request)
        present = "alias" in parse_query(request.query)
        return self._set(key, parse_alias_param(request.arg("alias"), present))

    async def _set(self, key: str, alias: str) -> Reply:
        what = f"key={key} alias={alias}: message SetAlias"
        doc = await directory_call(what, self.view.message_client().set_alias(key, alias))
        data = {"key": key, **{name: _optional_str(doc, name, what) for name in ("alias", "moved_from", "replaced")}}
        log.info("key=%s: alias set to %s (moved from key=%s, replaced %s)", key, data["alias"], data["moved_from"],
                 data["replaced"])
        return _reply(data)


class KeyInfoEndpoint(DirectoryEndpoint):
    """GET /key/info?key=K -> {"key": K, "tags": [sorted], "alias": A or null}."""

    def start(self, request: ApiRequest) -> Awaitable[Reply]:
        return self._info(self.key(request))

    async def _info(self, key: str) -> Reply:
        what = f"key={key}: message KeyInfo"
        doc = await directory_call(what, self.view.message_client().key_info(key))
        tags = doc.get("tags") if isinstance(doc, dict) else None
        if not isinstance(tags, list) or not all(isinstance(tag, str) for tag in tags):
            raise InternalError(f"{what}: tags is not a list of strings")
        return _reply({"key": key, "tags": tags, "alias": _optional_str(doc, "alias", what)})


class AliasGetEndpoint(DirectoryEndpoint):
    """GET /alias/get?alias=A -> {"alias": A, "key": K}; ret 1001 when no key holds A."""

    def start(self, request: ApiRequest) -> Awaitable[Reply]:
        value = request.arg("alias")
        if not value:
            raise ParamError("alias is missing")
        return self._get(parse_name(value, "alias"))

    async def _get(self, alias: str) -> Reply:
        key = await directory_call(f"alias={alias}: message AliasKey", self.view.message_client().alias_key(alias))
        if key is None:
            raise NoNodeError(f"alias={alias}: {UNKNOWN_ALIAS}", UNKNOWN_ALIAS)
        return _reply({"alias": alias, "key": key})


class TagKeysEndpoint(DirectoryEndpoint):
    """GET /tag/keys?tags=[[...]]&after=K&count=N -> {"keys": [ascending, > after], "next": K or null}."""

    def start(self, request: ApiRequest) -> Awaitable[Reply]:
        expression = parse_expression(request.arg("tags"))
        after = request.arg("after")
        if after:
            parse_key(after, self.limits.max_key_bytes, "after")
        return self._page(expression, after, parse_count(request.arg("count")))

    async def _page(self, expression: Expression, after: str, count: int) -> Reply:
        keys, cursor = await directory_call(f"tags={expression_text(expression)} after={after!r}: message TagKeys",
                                            self.view.message_client().tag_keys(expression, after, count))
        return _reply({"keys": list(keys), "next": cursor})


def targeting_endpoints(view: ClusterView, config: WebConfig, tracer: WebTracer | None) -> dict[str, Endpoint]:
    """The tag and alias endpoints of the admin listener, by path (the two pushes trace like the others)."""
    limits = config.limits
    tags, alias = PushTagsEndpoint(view, limits), PushAliasEndpoint(view, limits)
    for push in (tags, alias):
        push.tracer = tracer
        push.rpc_timeout = config.rpc.comet_timeout
    return {
        "/push/tags": tags,
        "/push/alias": alias,
        "/key/tags": KeyTagsEndpoint(view, limits),
        "/key/alias": KeyAliasEndpoint(view, limits),
        "/key/info": KeyInfoEndpoint(view, limits),
        "/alias/get": AliasGetEndpoint(view, limits),
        "/tag/keys": TagKeysEndpoint(view, limits),
    }
