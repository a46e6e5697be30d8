"""POST /push/all on the admin listener: one message to every connection on every comet (a public message, gid 1).

The message node assigns the public mid and stores the message when expire > 0 (``MessageAPI.save_public``); then
every comet of the view gets ``CometRPC.PushPublic(mid, msg)``, all at once, each call bounded by
``[rpc] comet_timeout``. A comet queues the broadcast and answers at once with the number of connections it will
write it to (its connections when it was queued). The reply is ``{"mid": N, "online": SUM, "fc": [names of the
comets that failed]}``.

A web node sends its broadcasts one at a time: one ``asyncio.Lock`` per node (the endpoint object is made once per
admin app) is held around the save and the comets' answers, so every comet queues one web node's broadcasts in mid
order and each connection receives them in that order. A save that fails answers 65535 and no comet is called. A
comet that fails (no RPC address, unreachable, timed out, error reply) is named in ``fc`` and logged once with the
mid; the other comets' broadcasts stand. Clients that were offline, or connected after the comet queued it, fetch
the message with ``/1/msg/get?p=`` (``/msg/get?pmid=``) when it was stored.

After answering, the comets in ``fc`` are retried in the background (``retries``, web/broadcast_retry.py: every
``[broadcast] retry_interval`` for ``retry_for`` seconds, at the node that holds the name by then), expire 0
broadcasts too; the reply's ``fc`` still names the comets that failed the first push.
"""
from __future__ import annotations

import asyncio
import json
import logging
from typing import Awaitable

from thirdparty.rpc_client import RemoteError, RpcUnavailable
from web.admin import AdminEndpoint
from web.broadcast_retry import BroadcastRetries
from web.cluster import ClusterView, CometNode
from web.config import LimitsConfig
from web.handlers import ApiRequest, Reply
from web.params import parse_expire, parse_message
from web.ret import InternalError

log = logging.getLogger(__name__)


class PushAllEndpoint(AdminEndpoint):
    """POST /push/all?expire=S, body = the message JSON -> {"mid": N, "online": C, "fc": [failed comet names]}."""

    def __init__(self, view: ClusterView, limits: LimitsConfig, rpc_timeout: float = 3.0) -> None:
        super().__init__(view, limits)
        self.rpc_timeout = rpc_timeout   # [rpc] comet_timeout: the longest wait for one comet's answer
        self._lock = asyncio.Lock()      # one broadcast at a time from this web node: mid order on every comet
        self.retries: BroadcastRetries | None = None   # retries the comets in fc in the background (None: no retry)

    def serve(self, request: ApiRequest) -> Awaitable[Reply]:
        limits = self.limits
        expire = parse_expire(request.arg("expire"), limits.max_expire)
        message = parse_message(request.body, limits.max_body_bytes)
        return self._broadcast(message, expire, request.remote_ip)

    async def _broadcast(self, message: bytes, expire: int, src: str) -> Reply:
        async with self._lock:
            mid = await self._save(message, expire, src)
            nodes = sorted(self.view.nodes.values(), key=lambda node: node.name)
            answers = await asyncio.gather(*(self._push(node, mid, message) for node in nodes))
            failed = [node.name for node, count in zip(nodes, answers) if count is None]
            if failed and self.retries is not None:
                self.retries.add(mid, message, failed)   # under the lock: added in mid order
        online = sum(count for count in answers if count is not None)
        if not nodes:
            log.warning("mid=%d: broadcast from %s: no comet node in the view, nobody online got it", mid, src)
        log.info("mid=%d: broadcast from %s to %d comet(s), %d connection(s), %d comet(s) failed%s, expire=%d, "
                 "%d bytes", mid, src, len(nodes) - len(failed), online, len(failed),
                 f" ({', '.join(failed)})" if failed else "", expire, len(message))
        fc = json.dumps(failed, ensure_ascii=False, separators=(",", ":")).encode("utf-8")
        return b'{"mid":%d,"online":%d,"fc":%b}' % (mid, online, fc)

    async def _save(self, message: bytes, expire: int, src: str) -> int:
        """The public mid from the message node; InternalError (65535, nothing sent) when the save fails."""
        try:
            return await self.view.message_client().save_public(message, expire)
        except RpcUnavailable as exc:
            reason = f"node unreachable ({exc})"
        except RemoteError as exc:
            reason = f"error {exc.code} {exc.message}"
        raise InternalError(f"broadcast from {src}: message SavePublic: {reason}; sent to no comet")

    async def _push(self, node: CometNode, mid: int, message: bytes) -> int | None:
        """The connections one comet will write the broadcast to; None (logged once) when that comet failed."""
        client = node.client()
        if client is None:
            log.error("mid=%d: comet %s has no rpc address, broadcast not sent to it", mid, node.name)
            return None
        try:
            return await asyncio.wait_for(client.push_public(mid, message), self.rpc_timeout)
        except TimeoutError:
            log.error("mid=%d: comet %s PushPublic: no answer within %.1fs", mid, node.name, self.rpc_timeout)
        except RpcUnavailable as exc:
            log.error("mid=%d: comet %s PushPublic: node unreachable (%s)", mid, node.name, exc)
        except RemoteError as exc:
            log.error("mid=%d: comet %s PushPublic: error %d %s", mid, node.name, exc.code, exc.message)
        except Exception:  # noqa: BLE001 - a bug with one comet must not hide the others' answers
            log.error("mid=%d: comet %s PushPublic: unexpected failure", mid, node.name, exc_info=True)
        return None
