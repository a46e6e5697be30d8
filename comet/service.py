"""CometService: subscribe admission, pushes in mid order per key, and channel closing; transport-free.

A push for key K (architecture.md, "Comet"): check the arguments and that K is this node's (before any I/O),
take K's lock, have the message node assign the mid (and store the message when expire > 0), encode the message
once and hand it to every connection of K, release the lock. One lock per key means every connection sees a
key's messages in mid order. Errors of the message node propagate as ``thirdparty.rpc_client.RpcUnavailable``
/ ``RemoteError`` from ``push_private`` (``comet/rpc.py`` maps them); ``push_privates`` reports the keys it
could not push instead of raising.
"""
from __future__ import annotations

import json
import logging
from typing import Any, Callable, Sequence

from comet.channel import ChannelFull, ChannelTable, Connection
from comet.client import PushResult
from comet.message_codec import EncodedMessage
from comet.protocol import REPLY_AUTH, REPLY_CHANNEL, REPLY_NODE, REPLY_OK, Subscribe
from comet.stat import CLOSE_RPC, CometStats
from message.client import MessageAPI
from thirdparty.rpc_client import RemoteError, RpcUnavailable
from thirdparty.rpc_codec import ERR_NOT_FOUND, ERR_PARAM, RpcError
from thirdparty.ring import Ring

log = logging.getLogger(__name__)

TokenCheck = Callable[[Subscribe], str]  # "" accepts the subscribe; anything else is why it is refused ("-a")


def accept_any_token(subscribe: Subscribe) -> str:
    """The token check of a comet without secrets (gopush-cluster's behaviour): any token, or none, is fine."""
    return ""


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


class CometService:
    """The comet's logic between the transports, the RPC front and the message node."""

    def __init__(self, *, node_name: str, ring: Ring, table: ChannelTable, message: MessageAPI,
                 stats: CometStats, max_key_bytes: int, max_message_bytes: int, max_keys_per_push: int,
                 token_check: TokenCheck = accept_any_token) -> None:
        self.node_name = node_name
        self.ring = ring
        self.table = table
        self.message = message
        self.stats = stats
        self.max_key_bytes = max_key_bytes
        self.max_message_bytes = max_message_bytes
        self.max_keys_per_push = max_keys_per_push
        self.token_check = token_check

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
                    self.table.add(conn)
                except ChannelFull as exc:
                    reply, why = REPLY_CHANNEL, str(exc)
                else:
                    self.stats.opened(conn.protocol)
                    return REPLY_OK, ""
        self.stats.refusals[reply.decode().strip()] += 1
        return reply, why

    def connection_closed(self, conn: Connection, reason: str, subscribed: bool) -> None:
        """The transport's last word on a connection: forget it and count the close."""
        self.table.remove(conn)
        self.stats.closed(conn.protocol, reason, subscribed)

    def close_key(self, key: str) -> int:
        """Close every connection of ``key`` (e.g. after its messages were deleted); return how many."""
        self._check_key_type(key)
        closed = self.table.close_key(key, CLOSE_RPC)
        log.info("key=%s: closed %d connection(s) on request", key, closed)
        return closed

    # -- pushes --------------------------------------------------------------------------------------------

    async def push_private(self, key: str, msg: bytes, expire: int) -> PushResult:
        """Save ``msg`` for ``key`` (mid assigned by the message node) and write it to the key's connections."""
        self._check_message(msg, expire)
        self._check_key_type(key)
        problem = self._key_problem(key)
        if problem:
            raise RpcError(ERR_PARAM, problem)
        if not self.owns(key):
            raise RpcError(ERR_NOT_FOUND, f"key is served by {self.ring.get(key)}, not by {self.node_name}")
        async with self.table.lock(key):
            try:
                mid = await self.message.save_private(key, msg, expire)
            except (RpcUnavailable, RemoteError):
                self.stats.push_failures += 1
                raise
            online = self._deliver(key, EncodedMessage(msg, mid))
        self.stats.pushes += 1
        log.debug("key=%s mid=%d: written to %d connection(s), expire=%d", key, mid, online, expire)
        return PushResult(mid=mid, online=online)

    async def push_privates(self, keys: Sequence[str], msg: bytes, expire: int) -> tuple[list[str], int]:
        """Push one message to many keys; return (keys that failed, connections written)."""
        self._check_message(msg, expire)
        if not isinstance(keys, (list, tuple)):
            raise RpcError(ERR_PARAM, "keys must be a list of strings")
        if len(keys) > self.max_keys_per_push:
            raise RpcError(ERR_PARAM, f"{len(keys)} keys, more than {self.max_keys_per_push}")
        for key in keys:
            self._check_key_type(key)
        failed: list[str] = []
        mine: list[str] = []
        for key in dict.fromkeys(keys):
            (mine if not self._key_problem(key) and self.owns(key) else failed).append(key)
        if failed:
            log.info("push_privates: %d key(s) invalid or not on this node, e.g. key=%s", len(failed), failed[0])
        self.stats.multi_pushes += 1
        if not mine:
            return failed, 0
        online = 0
        async with self.table.lock_many(mine):
            try:
                saved = await self.message.save_privates(mine, msg, expire)
            except (RpcUnavailable, RemoteError) as exc:
                log.error("push_privates: message node failed (%s), %d key(s) failed, e.g. key=%s",
                          exc, len(mine), mine[0])
                self.stats.push_failures += len(mine)
                return failed + mine, 0
            for key in mine:
                mid = saved.get(key)
                if mid is None:
                    failed.append(key)
                    self.stats.push_failures += 1
                else:
                    online += self._deliver(key, EncodedMessage(msg, mid))
        log.debug("push_privates: %d key(s) pushed, %d failed, %d connection(s) written",
                  len(mine), len(failed), online)
        return failed, online

    def _deliver(self, key: str, message: EncodedMessage) -> int:
        written = 0
        for conn in self.table.get(key):
            if conn.send(message):
                written += 1
            else:  # overflowed (now closing) or already closing: stop sending to it
                self.table.remove(conn)
        self.stats.deliveries += written
        return written

    # -- argument checks (before any I/O) ------------------------------------------------------------------

    def _check_key_type(self, key: object) -> None:
        if not isinstance(key, str):
            raise RpcError(ERR_PARAM, f"key must be a string, not {type(key).__name__}")

    def _key_problem(self, key: str) -> str:
        """Why ``key`` is not a valid subscriber key ("" when it is)."""
        if not key:
            return "key is empty"
        if not key.isprintable() and any(ch < " " or ch == "\x7f" for ch in key):
            return "key contains control characters"
        size = len(key.encode("utf-8", "surrogatepass"))
        if size > self.max_key_bytes:
            return f"key is {size} bytes, more than {self.max_key_bytes}"
        return ""

    def _check_message(self, msg: object, expire: object) -> None:
        if not isinstance(msg, bytes):
            raise RpcError(ERR_PARAM, f"msg must be bytes, not {type(msg).__name__}")
        if not msg or len(msg) > self.max_message_bytes:
            raise RpcError(ERR_PARAM, f"msg is {len(msg)} bytes, not 1..{self.max_message_bytes}")
        if not isinstance(expire, int) or isinstance(expire, bool) or expire < 0:
            raise RpcError(ERR_PARAM, f"expire must be an integer >= 0, not {expire!r:.40}")
        try:
            json.loads(msg.decode("utf-8"), parse_constant=_reject_constant)
        except UnicodeDecodeError:
            raise RpcError(ERR_PARAM, "msg is not UTF-8") from None
        except (ValueError, RecursionError):
            raise RpcError(ERR_PARAM, "msg is not valid JSON") from None
