"""Admin HTTP API handlers: push to one key, push to many keys, delete a key's messages.

Admin endpoints take POST only, never JSONP. When the web config sets ``[admin] token``, every request
must carry ``Authorization: Bearer <token>``; anything else gets HTTP 401 before the body is looked at.
"""
from __future__ import annotations

import asyncio
import hmac
import logging
from typing import Sequence

from comet.client import PushResult
from thirdparty.rpc_client import RemoteError, RpcUnavailable
from web.cluster import ClusterView, CometNode
from web.config import LimitsConfig
from web.handlers import LEGACY, ApiHandler, JSONData, ParamNames, rpc_call
from web.params import parse_expire, parse_form_key, parse_key, parse_message, parse_multi_body
from web.ret import NoNodeError

log = logging.getLogger(__name__)


def token_matches(authorization: str, token: str) -> bool:
    """True when ``authorization`` is ``Bearer <token>`` (scheme case-insensitive, constant-time compare)."""
    scheme, _, given = authorization.strip().partition(" ")
    if scheme.lower() != "bearer":
        return False
    return hmac.compare_digest(given.strip().encode("utf-8"), token.encode("utf-8"))


class AdminHandler(ApiHandler):
    """Base of the admin endpoints: bearer-token check in prepare(), before any body is parsed."""

    def initialize(self, view: ClusterView, limits: LimitsConfig, names: ParamNames = LEGACY,
                   token: str = "") -> None:
        super().initialize(view, limits, names)
        self.token = token

    def prepare(self) -> None:
        if not self.token:
            return
        if token_matches(self.request.headers.get("Authorization", ""), self.token):
            return
        log.warning("%s: admin request from %s refused: missing or wrong bearer token",
                    self.request.path, self.request.remote_ip)
        self.set_header("WWW-Authenticate", 'Bearer realm="pushcluster-admin"')
        self.reply_http_error(401, "unauthorized")

    async def post(self) -> None:
        await self.respond(self.serve())

    async def serve(self) -> JSONData | None:
        raise NotImplementedError


class PushPrivateHandler(AdminHandler):
    """POST /push/private?key=K&expire=S, body = the message JSON -> {"mid": N, "online": C}."""

    async def serve(self) -> JSONData:
        key = parse_key(self.arg("key"), self.limits.max_key_bytes)
        expire = parse_expire(self.arg("expire"), self.limits.max_expire)
        message = parse_message(self.request.body, self.limits.max_body_bytes)
        node = self.view.pick(key)
        if node is None:
            raise NoNodeError(f"key={key}: no comet node")
        client = node.client()
        if client is None:
            raise NoNodeError(f"key={key}: comet {node.name} has no rpc address")
        result: PushResult = await rpc_call(f"key={key}: comet {node.name} PushPrivate",
                                            client.push_private(key, message, expire))
        log.debug("key=%s mid=%d: pushed via comet %s to %d connection(s), expire=%d",
                 key, result.mid, node.name, result.online, expire)
        return {"mid": result.mid, "online": result.online}


class PushMultiHandler(AdminHandler):
    """POST /push/mprivate?expire=S, body {"m": "<message JSON>", "k": "k1,k2"} -> {"fk": [failed keys]}.

    Keys are grouped by comet node and the nodes are pushed concurrently; a node that cannot be reached
    (or has no RPC address, or no node at all) fails only its own keys.
    """

    async def serve(self) -> JSONData:
        expire = parse_expire(self.arg("expire"), self.limits.max_expire)
        message, keys = parse_multi_body(self.request.body, self.limits.max_body_bytes,
                                         self.limits.max_key_bytes, self.limits.max_keys_per_push)
        groups, unrouted = self.view.group(keys)
        if unrouted:
            log.warning("%d key(s) have no comet node, e.g. key=%s", len(unrouted), unrouted[0])
        failed = set(unrouted)
        results = await asyncio.gather(*(self._push(node, node_keys, message, expire)
                                         for node, node_keys in groups.items()))
        for node_failed in results:
            failed.update(node_failed)
        log.info("mprivate: %d key(s) on %d comet(s), %d failed, expire=%d",
                 len(keys), len(groups), len(failed), expire)
        return {"fk": [key for key in keys if key in failed]}

    @staticmethod
    async def _push(node: CometNode, keys: Sequence[str], message: bytes, expire: int) -> list[str]:
        """Push to one node's keys; the keys that failed (all of them when the node fails)."""
        client = node.client()
        if client is None:
            log.warning("comet %s: no rpc address, %d key(s) failed, e.g. key=%s", node.name, len(keys), keys[0])
            return list(keys)
        try:
            failed = await client.push_privates(keys, message, expire)
        except RpcUnavailable as exc:
            log.error("comet %s: unreachable (%s), %d key(s) failed, e.g. key=%s",
                      node.name, exc, len(keys), keys[0])
            return list(keys)
        except RemoteError as exc:
            log.error("comet %s: PushPrivates error %d %s, %d key(s) failed, e.g. key=%s",
                      node.name, exc.code, exc.message, len(keys), keys[0])
            return list(keys)
        asked = set(keys)
        return [key for key in failed if key in asked]


class DelPrivateHandler(AdminHandler):
    """POST /msg/del, form key=K: delete K's stored messages, then close K's comet connections.

    The delete comes first (a client that reconnects after the close finds nothing to fetch). If the
    message node cannot be reached the request fails with 65535 and nothing is closed; if only the comet
    cannot be reached the delete still stands and ``closed`` is null.
    """

    async def serve(self) -> JSONData:
        key = parse_form_key(self.request.body, self.limits.max_key_bytes)
        deleted = await rpc_call(f"key={key}: message DelPrivate",
                                 self.view.message_client().del_private(key))
        closed = await self._close(key)
        log.info("key=%s: %d stored message(s) deleted, connections closed: %s", key, deleted, closed)
        return {"deleted": deleted, "closed": closed}

    async def _close(self, key: str) -> int | None:
        """Connections closed on the key's comet (0 when no node serves it, None when that failed)."""
        node = self.view.pick(key)
        if node is None:
            return 0
        client = node.client()
        if client is None:
            log.warning("key=%s: comet %s has no rpc address, channel not closed", key, node.name)
            return None
        try:
            return await client.close_key(key)
        except RpcUnavailable as exc:
            log.error("key=%s: comet %s unreachable (%s), channel not closed", key, node.name, exc)
        except RemoteError as exc:
            log.error("key=%s: comet %s Close error %d %s, channel not closed", key, node.name, exc.code, exc.message)
        return None
