"""Admin HTTP API endpoints: push to one key, push to many keys, delete a key's messages.

Admin endpoints take POST only (the trace queries of web/trace_handlers.py are GETs), never JSONP. When the web
config sets ``[admin] token``, every request must carry ``Authorization: Bearer <token>``; anything else gets HTTP
401 before the body is looked at (``web.app.Api`` checks it before calling the endpoint).

A push may wait for its outcome (``wait=acked|written``, ``timeout``: web/push_wait.py). With a tracer, every
push hands the comet its accepted time and source (``meta``), and a push that fails before the comet took it
is recorded in the key's trace with why.
"""
from __future__ import annotations

import asyncio
import hmac
import json
import logging
import time
from dataclasses import dataclass
from typing import Any, Awaitable, ClassVar, Sequence

from comet.client import PushResult
from thirdparty.rpc_client import RemoteError, RpcUnavailable
from web.cluster import CometNode
from web.handlers import ApiRequest, Endpoint, Reply, rpc_call
from web.params import parse_expire, parse_form_key, parse_key, parse_message, parse_multi_body
from web.push_wait import PushWait, outcomes_json, parse_wait, push_meta
from web.ret import NoNodeError, RetError
from web.tracing import WebTracer

log = logging.getLogger(__name__)

BATCHES_IN_FLIGHT = 3   # multi-key batches one comet gets at once (their RPC round trips overlap)
NodeResult = tuple[list[str], int, dict[str, str]]  # (failed keys, connections written to, outcome by key)


def token_matches(authorization: str, token: str) -> bool:
    """True when ``authorization`` is ``Bearer <token>`` (scheme case-insensitive, constant-time compare)."""
    scheme, _, given = authorization.strip().partition(" ")
    if scheme.lower() != "bearer":
        return False
    return hmac.compare_digest(given.strip().encode("utf-8"), token.encode("utf-8"))


class AdminEndpoint(Endpoint):
    """Base of the admin endpoints: POST, bearer token (when configured)."""

    method: ClassVar[str] = "POST"
    admin: ClassVar[bool] = True


class PushEndpoint(AdminEndpoint):
    """What the two push endpoints share: the wait parameters, the trace, the longer call of a waiting push."""

    tracer: WebTracer | None = None   # set by web.app.make_admin_app when the node traces
    rpc_timeout: float = 3.0          # the CometRPC timeout; a waiting push gets its wait time on top

    def _wait(self, request: ApiRequest) -> PushWait | None:
        limits = self.limits
        return parse_wait(request.arg("wait"), request.arg("timeout"), limits.push_wait_default,
                          limits.push_wait_max)

    def _meta(self, src: str, wait: PushWait | None) -> tuple[dict[str, Any] | None, float | None]:
        """The ``meta`` for the comet (None: none needed) and the call's timeout (None: the client's own)."""
        if self.tracer is None and wait is None:
            return None, None
        meta = push_meta(time.time() if self.tracer is not None else None, src, wait)
        return meta, None if wait is None else wait.timeout + self.rpc_timeout

    def _failed(self, keys: Sequence[str], reason: str, node: str | None, src: str, message: bytes,
                expire: int) -> None:
        if self.tracer is not None:
            for key in keys:
                self.tracer.failed(key, reason, node, src, len(message), expire)


class PushPrivateEndpoint(PushEndpoint):
    """POST /push/private?key=K&expire=S[&wait=acked|written[&timeout=S]], body = the message JSON
    -> {"mid": N, "online": C[, "outcome": O]}."""

    def serve(self, request: ApiRequest) -> Awaitable[Reply]:
        limits = self.limits
        key = parse_key(request.arg("key"), limits.max_key_bytes)
        expire = parse_expire(request.arg("expire"), limits.max_expire)
        message = parse_message(request.body, limits.max_body_bytes)
        return self.push(key, message, expire, self._wait(request), request.remote_ip)

    def push(self, key: str, message: bytes, expire: int, wait: PushWait | None, src: str) -> Awaitable[bytes]:
        """The push to one key once its parameters are checked (also /push/alias, web/targeting.py)."""
        node = self.view.pick(key)
        if node is None:
            self._failed((key,), "no comet node serves the key", None, src, message, expire)
            raise NoNodeError(f"key={key}: no comet node")
        client = node.client()
        if client is None:
            self._failed((key,), f"comet {node.name} has no rpc address", node.name, src, message, expire)
            raise NoNodeError(f"key={key}: comet {node.name} has no rpc address")
        meta, timeout = self._meta(src, wait)
        call = (client.push_private(key, message, expire) if meta is None
                else client.push_private(key, message, expire, meta, timeout=timeout))
        return self._push(node, key, call, expire, wait is not None, src, len(message))

    async def _push(self, node: CometNode, key: str, call: Awaitable[PushResult], expire: int, waited: bool,
                    src: str, size: int) -> bytes:
        try:
            result = await rpc_call(f"key={key}: comet {node.name} PushPrivate", call)
        except RetError as exc:
            if self.tracer is not None:
                self.tracer.failed(key, exc.reason.removeprefix(f"key={key}: "), node.name, src, size, expire)
            raise
        if log.isEnabledFor(logging.DEBUG):
            log.debug("key=%s mid=%d: pushed via comet %s to %d connection(s), expire=%d%s", key, result.mid,
                      node.name, result.online, expire, f", outcome {result.outcome}" if waited else "")
        if waited:
            return b'{"mid":%d,"online":%d,"outcome":"%b"}' % (result.mid, result.online, result.outcome.encode())
        return b'{"mid":%d,"online":%d}' % (result.mid, result.online)


class PushMultiEndpoint(PushEndpoint):
    """POST /push/mprivate?expire=S[&wait=acked|written[&timeout=S]], body {"m": "<message JSON>", "k": "k1,k2"}
    -> {"fk": [failed keys][, "outcomes": {key: O}]}.

    Keys are grouped by comet node and the nodes are pushed concurrently; a node that cannot be reached
    (or has no RPC address, or no node at all) fails only its own keys.
    """

    def serve(self, request: ApiRequest) -> Awaitable[Reply]:
        limits = self.limits
        expire = parse_expire(request.arg("expire"), limits.max_expire)
        message, keys = parse_multi_body(request.body, limits.max_body_bytes, limits.max_key_bytes,
                                         limits.max_keys_per_push)
        wait = self._wait(request)
        return self._push_all(keys, message, expire, request.remote_ip, wait)

    async def _push_all(self, keys: list[str], message: bytes, expire: int, src: str,
                        wait: PushWait | None) -> Reply:
        result = await self.push_keys(keys, message, expire, src, wait)
        log.info("mprivate: %d key(s) on %d comet(s), %d failed, expire=%d",
                 len(keys), result.nodes, len(result.failed), expire)
        reply = b'{"fk":%b' % json.dumps(result.failed, ensure_ascii=False, separators=(",", ":")).encode("utf-8")
        if wait is not None:
            reply += b',"outcomes":%b' % outcomes_json(result.outcomes, keys)
        return reply + b"}"

    async def push_keys(self, keys: list[str], message: bytes, expire: int, src: str,
                        wait: PushWait | None) -> MultiPushResult:
        """The multi-key path (also /push/tags): ``keys`` grouped by comet, the comets pushed concurrently, each
        one's keys in calls of at most ``[limits] max_keys_per_push``."""
        groups, unrouted = self.view.group(keys)
        if unrouted:
            log.warning("%d key(s) have no comet node, e.g. key=%s", len(unrouted), unrouted[0])
            self._failed(unrouted, "no comet node serves the key", None, src, message, expire)
        meta, timeout = self._meta(src, wait)
        failed = set(unrouted)
        outcomes: dict[str, str] = {}
        online = 0
        if len(groups) == 1:
            ((node, node_keys),) = groups.items()
            results = [await self._push_node(node, node_keys, message, expire, src, meta, timeout)]
        else:
            results = await asyncio.gather(*(self._push_node(node, node_keys, message, expire, src, meta, timeout)
                                             for node, node_keys in groups.items()))
        for node_failed, node_online, node_outcomes in results:
            failed.update(node_failed)
            online += node_online
            outcomes.update(node_outcomes)
        failed_keys = [key for key in keys if key in failed] if failed else []
        return MultiPushResult(failed_keys, online, outcomes, len(groups))

    async def _push_node(self, node: CometNode, keys: Sequence[str], message: bytes, expire: int, src: str,
                         meta: dict[str, Any] | None, timeout: float | None) -> NodeResult:
        """One node's keys in batches, ``BATCHES_IN_FLIGHT`` at a time (their trips to the comet, the message node
        and Redis overlap); once the node cannot be reached, its remaining keys fail uncalled."""
        size = self.limits.max_keys_per_push
        if len(keys) <= size:
            return (await self._push(node, keys, message, expire, src, meta, timeout))[0]
        failed: list[str] = []
        online = 0
        outcomes: dict[str, str] = {}
        parts = [keys[start:start + size] for start in range(0, len(keys), size)]   # order kept
        for start in range(0, len(parts), BATCHES_IN_FLIGHT):
            wave = parts[start:start + BATCHES_IN_FLIGHT]
            answers = await asyncio.gather(*(self._push(node, batch, message, expire, src, meta, timeout)
                                             for batch in wave))
            reachable = True
            for (batch_failed, batch_online, batch_outcomes), batch_reachable in answers:
                failed.extend(batch_failed)
                online += batch_online
                outcomes.update(batch_outcomes)
                reachable = reachable and batch_reachable
            if not reachable:
                rest = [key for part in parts[start + BATCHES_IN_FLIGHT:] for key in part]
                if rest:
                    log.error("comet %s: unreachable, its %d remaining key(s) failed uncalled, e.g. key=%s",
                              node.name, len(rest), rest[0])
                    self._failed(rest, f"comet {node.name} PushPrivates: node unreachable", node.name, src,
                                 message, expire)
                failed.extend(rest)
                break
        return failed, online, outcomes

    async def _push(self, node: CometNode, keys: Sequence[str], message: bytes, expire: int, src: str,
                    meta: dict[str, Any] | None, timeout: float | None) -> tuple[NodeResult, bool]:
        """Push to one node's keys: (the keys that failed (all of them when the node fails), the connections
        written to, the outcomes), and whether the node could be reached."""
        client = node.client()
        if client is None:
            log.warning("comet %s: no rpc address, %d key(s) failed, e.g. key=%s", node.name, len(keys), keys[0])
            self._failed(keys, f"comet {node.name} has no rpc address", node.name, src, message, expire)
            return (list(keys), 0, {}), False
        try:
            failed, online, outcomes = await client.push_privates_counted(keys, message, expire, meta,
                                                                          timeout=timeout)
        except RpcUnavailable as exc:
            log.error("comet %s: unreachable (%s), %d key(s) failed, e.g. key=%s",
                      node.name, exc, len(keys), keys[0])
            self._failed(keys, f"comet {node.name} PushPrivates: node unreachable ({exc})", node.name, src, message,
                         expire)
            return (list(keys), 0, {}), False
        except RemoteError as exc:
            log.error("comet %s: PushPrivates error %d %s, %d key(s) failed, e.g. key=%s",
                      node.name, exc.code, exc.message, len(keys), keys[0])
            self._failed(keys, f"comet {node.name} PushPrivates: error {exc.code} {exc.message}", node.name, src,
                         message, expire)
            return (list(keys), 0, {}), True
        if not failed:
            return ([], online, outcomes), True
        asked = set(keys)
        return ([key for key in failed if key in asked], online, outcomes), True


@dataclass(frozen=True, slots=True)
class MultiPushResult:
    """What a multi-key push did: the failed keys (in the order given), connections written to, outcomes."""

    failed: list[str]
    online: int
    outcomes: dict[str, str]
    nodes: int   # comets called


class DelPrivateEndpoint(AdminEndpoint):
    """POST /msg/del, form key=K: delete K's stored messages, then close K's comet connections.

    The delete comes first (a client that reconnects after the close finds nothing to fetch). If the
    message node cannot be reached the request fails with 65535 and nothing is closed; if only the comet
    cannot be reached the delete still stands and ``closed`` is null.
    """

    def serve(self, request: ApiRequest) -> Awaitable[Reply]:
        return self._delete(parse_form_key(request.body, self.limits.max_key_bytes))

    async def _delete(self, key: str) -> Reply:
        deleted = await rpc_call(f"key={key}: message DelPrivate",
                                 self.view.message_client().del_private(key))
        closed = await self._close(key)
        log.info("key=%s: %d stored message(s) deleted, connections closed: %s", key, deleted, closed)
        return b'{"deleted":%d,"closed":%b}' % (deleted, b"null" if closed is None else b"%d" % closed)

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
