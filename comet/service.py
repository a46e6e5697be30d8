"""CometService: subscribe admission, pushes in mid order per key, acks, and channel closing; transport-free.

A push for key K (architecture.md, "Comet"): check the arguments and that K is this node's (before any I/O),
take K's lock, have the message node assign the mid (and store the message when expire > 0), encode the message
once and hand it to every connection of K, release the lock. One lock per key means every connection sees a
key's messages in mid order. Errors of the message node propagate as ``thirdparty.rpc_client.RpcUnavailable``
/ ``RemoteError`` from ``push_private`` (``comet/rpc.py`` maps them); ``push_privates`` reports the keys it
could not push instead of raising.

A push may ask for its outcome (``comet/ack_waiters.py``): ``written`` is known when the lock is released;
``acked`` is waited for after that (never under the lock), until a connection it was written to acknowledges the
mid or the timeout passes. An ack is taken only for a mid this connection can have received: above the key's
last mid when it subscribed, and not above the key's last mid (``Channel.last_mid``); others count as
``acks_unknown``. With a :class:`comet.tracing.CometTracer`, pushes, acks, subscribes and closes are traced.
"""
from __future__ import annotations

import asyncio
import logging
import time
from typing import Callable, Sequence

from comet.ack_waiters import ACKED, NO_META, OFFLINE, WRITTEN, AckWaiters, PushMeta
from comet.channel import ChannelFull, ChannelTable, Connection
from comet.client import PushResult
from comet.message_codec import EncodedMessage
from comet.protocol import REPLY_AUTH, REPLY_CHANNEL, REPLY_NODE, REPLY_OK, Subscribe
from comet.push_args import check_key_type, check_message, key_problem
from comet.stat import CLOSE_RPC, CometStats
from comet.tracing import CometTracer
from message.client import MessageAPI
from thirdparty.rpc_client import RemoteError, RpcUnavailable
from thirdparty.rpc_codec import ERR_NOT_FOUND, ERR_PARAM, RpcError
from thirdparty.ring import Ring

log = logging.getLogger(__name__)

TokenCheck = Callable[[Subscribe], str]  # "" accepts the subscribe; anything else is why it is refused ("-a")
DEFAULT_MAX_ACK_WAITS = 10000


def accept_any_token(subscribe: Subscribe) -> str:
    """The token check of a comet without secrets (gopush-cluster's behaviour): any token, or none, is fine."""
    return ""


class CometService:
    """The comet's logic between the transports, the RPC front and the message node."""

    def __init__(self, *, node_name: str, ring: Ring, table: ChannelTable, message: MessageAPI,
                 stats: CometStats, max_key_bytes: int, max_message_bytes: int, max_keys_per_push: int,
                 token_check: TokenCheck = accept_any_token, tracer: CometTracer | None = None,
                 waiters: AckWaiters | None = None) -> None:
        self.node_name = node_name
        self.ring = ring
        self.table = table
        self.message = message
        self.stats = stats
        self.max_key_bytes = max_key_bytes
        self.max_message_bytes = max_message_bytes
        self.max_keys_per_push = max_keys_per_push
        self.token_check = token_check
        self.tracer = tracer
        self.waiters = waiters if waiters is not None else AckWaiters(DEFAULT_MAX_ACK_WAITS)

    def owns(self, key: str) -> bool:
        """True when the ring maps ``key`` to this node."""
        return self.ring.get(key) == self.node_name

    # -- connections ---------------------------------------------------------------------------------------

    def subscribe(self, conn: Connection, subscribe: Subscribe) -> tuple[bytes, str]:
        """Admit and register ``conn`` (its key already set): ``(REPLY_OK, "")`` when registered, else the
        ``-x`` reply and why (for the log line).

        The transport must write REPLY_OK before it awaits anything, so that no message can overtake it.
        """
        if not self.owns(subscribe.key):
            reply, why = REPLY_NODE, f"key is served by {self.ring.get(subscribe.key)}"
        else:
            why = self.token_check(subscribe)
            if why:
                reply = REPLY_AUTH
            else:
                try:
                    channel = self.table.add(conn)
                except ChannelFull as exc:
                    reply, why = REPLY_CHANNEL, str(exc)
                else:
                    conn.since_mid = channel.last_mid
                    self.stats.opened(conn.protocol)
                    if self.tracer is not None:
                        self.tracer.opened(conn.key, conn.conn_id, getattr(conn, "peer", "?"), conn.protocol,
                                           subscribe.version)
                    return REPLY_OK, ""
        self.stats.refusals[reply.decode().strip()] += 1
        return reply, why

    def connection_closed(self, conn: Connection, reason: str, subscribed: bool) -> None:
        """The transport's last word on a connection: forget it and count the close."""
        self.table.remove(conn)
        self.stats.closed(conn.protocol, reason, subscribed)
        if subscribed and self.tracer is not None:
            self.tracer.closed(conn.key, conn.conn_id, reason)

    def acked(self, conn: Connection, mids: Sequence[int]) -> None:
        """Acks from ``conn``: end the pushes waiting for them and trace them (see the module docstring)."""
        key = conn.key
        channel = self.table.channel(key)
        last = channel.last_mid if channel is not None else 0
        for mid in mids:
            self.stats.acks += 1
            if not conn.since_mid < mid <= last:
                self.stats.acks_unknown += 1
                log.debug("key=%s mid=%d conn=%d: ack of a mid not sent to this connection", key, mid, conn.conn_id)
                continue
            self.waiters.ack(key, mid, conn.conn_id)
            if self.tracer is not None:
                self.tracer.acked(key, mid, conn.conn_id)

    def close_key(self, key: str) -> int:
        """Close every connection of ``key`` (e.g. after its messages were deleted); return how many."""
        check_key_type(key)
        closed = self.table.close_key(key, CLOSE_RPC)
        log.info("key=%s: closed %d connection(s) on request", key, closed)
        return closed

    # -- pushes --------------------------------------------------------------------------------------------

    async def push_private(self, key: str, msg: bytes, expire: int, meta: PushMeta = NO_META) -> PushResult:
        """Save ``msg`` for ``key`` (mid assigned by the message node) and write it to the key's connections."""
        check_message(msg, expire, self.max_message_bytes)
        check_key_type(key)
        problem = key_problem(key, self.max_key_bytes)
        if problem:
            raise RpcError(ERR_PARAM, problem)
        if not self.owns(key):
            raise RpcError(ERR_NOT_FOUND, f"key is served by {self.ring.get(key)}, not by {self.node_name}")
        tracer = self.tracer
        detail = tracer is not None or meta.wait == ACKED
        routed_at = time.time() if tracer is not None else 0.0
        async with self.table.lock(key):
            try:
                mid = await self.message.save_private(key, msg, expire)
            except (RpcUnavailable, RemoteError):
                self.stats.push_failures += 1
                raise
            saved_at = time.time() if tracer is not None else 0.0
            conns: list[int] | None = [] if detail else None
            failed: list[tuple[int, str]] | None = [] if tracer is not None else None
            online = self._deliver(key, EncodedMessage(msg, mid), conns, failed)
            waiting = self._expect(key, mid, conns, meta)
        self.stats.pushes += 1
        log.debug("key=%s mid=%d: written to %d connection(s), expire=%d", key, mid, online, expire)
        if tracer is not None:
            tracer.pushed(key, mid, routed_at, saved_at, time.time(), conns or (), failed or (), meta, len(msg),
                          expire)
        outcome = ""
        if meta.wait:
            outcome = await waiting if waiting is not None else WRITTEN if online else OFFLINE
        return PushResult(mid=mid, online=online, outcome=outcome)

    async def push_privates(self, keys: Sequence[str], msg: bytes, expire: int,
                            meta: PushMeta = NO_META) -> tuple[list[str], int, dict[str, str]]:
        """Push one message to many keys; return (keys that failed, connections written, outcome per pushed key
        when ``meta`` asks for them)."""
        check_message(msg, expire, self.max_message_bytes)
        if not isinstance(keys, (list, tuple)):
            raise RpcError(ERR_PARAM, "keys must be a list of strings")
        if len(keys) > self.max_keys_per_push:
            raise RpcError(ERR_PARAM, f"{len(keys)} keys, more than {self.max_keys_per_push}")
        for key in keys:
            check_key_type(key)
        failed: list[str] = []
        mine: list[str] = []
        for key in dict.fromkeys(keys):
            problem = key_problem(key, self.max_key_bytes)
            if not problem and not self.owns(key):
                problem = f"key is served by {self.ring.get(key)}, not by {self.node_name}"
                self._trace_failed(key, problem, meta, msg, expire)
            (failed if problem else mine).append(key)
        if failed:
            log.info("push_privates: %d key(s) invalid or not on this node, e.g. key=%r", len(failed), failed[0])
        self.stats.multi_pushes += 1
        outcomes: dict[str, str] = {}
        if not mine:
            return failed, 0, outcomes
        online = 0
        tracer = self.tracer
        routed_at = time.time()
        waiting: dict[str, asyncio.Future[str]] = {}
        async with self.table.lock_many(mine):
            try:
                saved = await self.message.save_privates(mine, msg, expire)
            except (RpcUnavailable, RemoteError) as exc:
                log.error("push_privates: message node failed (%s), %d key(s) failed, e.g. key=%r",
                          exc, len(mine), mine[0])
                self.stats.push_failures += len(mine)
                for key in mine:
                    self._trace_failed(key, f"message node failed: {exc}", meta, msg, expire)
                return failed + mine, 0, outcomes
            detail = tracer is not None or meta.wait == ACKED
            saved_at = time.time()
            for key in mine:
                mid = saved.get(key)
                if mid is None:
                    failed.append(key)
                    self.stats.push_failures += 1
                    self._trace_failed(key, "not saved: its message store shard failed", meta, msg, expire)
                    continue
                conns: list[int] | None = [] if detail else None
                bad: list[tuple[int, str]] | None = [] if tracer is not None else None
                written = self._deliver(key, EncodedMessage(msg, mid), conns, bad)
                online += written
                if tracer is not None:
                    tracer.pushed(key, mid, routed_at, saved_at, time.time(), conns or (), bad or (), meta, len(msg),
                                  expire)
                future = self._expect(key, mid, conns, meta)
                if future is not None:
                    waiting[key] = future
                elif meta.wait:
                    outcomes[key] = WRITTEN if written else OFFLINE
        if waiting:
            for key, outcome in zip(waiting, await asyncio.gather(*waiting.values())):
                outcomes[key] = outcome
        log.debug("push_privates: %d key(s) pushed, %d failed, %d connection(s) written",
                  len(mine), len(failed), online)
        return failed, online, outcomes

    def _expect(self, key: str, mid: int, conns: list[int] | None, meta: PushMeta) -> asyncio.Future[str] | None:
        """Start waiting for an ack when the push asks for one and some connection got the message."""
        if meta.wait != ACKED or not conns:
            return None
        return self.waiters.expect(key, mid, conns, meta.timeout)

    def _trace_failed(self, key: str, reason: str, meta: PushMeta, msg: bytes, expire: int) -> None:
        if self.tracer is not None:
            self.tracer.failed(key, reason, meta, len(msg), expire)

    def _deliver(self, key: str, message: EncodedMessage, conns: list[int] | None,
                 failed: list[tuple[int, str]] | None) -> int:
        """Write to every connection of ``key``; note the ids written to (``conns``) and those that could not
        take it (``failed``, with why) when asked."""
        channel = self.table.channel(key)
        if channel is None:
            return 0
        channel.last_mid = message.mid
        written = 0
        for conn in list(channel.connections.values()):
            if conn.send(message):
                written += 1
                if conns is not None:
                    conns.append(conn.conn_id)
            else:  # overflowed (now closing) or already closing: stop sending to it
                self.table.remove(conn)
                if failed is not None:
                    failed.append((conn.conn_id, getattr(conn, "close_reason", None) or "closing"))
        self.stats.deliveries += written
        return written
