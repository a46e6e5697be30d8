"""BroadcastRetries: a web node's background retry of ``/push/all`` to the comets that failed it (listed in ``fc``).

``POST /push/all`` answers once every comet of the view answered or failed. Each failed comet *name* is then
retried here: every ``[broadcast] retry_interval`` seconds the view's CURRENT node of that name is looked up (after
a failover it is the promoted standby, another instance with another RPC address) and ``push_public(mid, msg)`` is
called again, each call bounded by ``[rpc] comet_timeout``, until it answers or ``retry_for`` seconds have passed
since the broadcast. A name that left the view is dropped quietly (its clients reconnect elsewhere and catch up).
The success (mid, comet, attempt; the first push is attempt 1) and the give-up are logged once each.

Every failed broadcast is retried, ``expire = 0`` ones too: they are delivered only to the clients online, they
are not stored, so for the clients of a comet that missed them (e.g. ones already reconnected to a promoted
standby while the view still named the dead instance) a retry is the only way to get them.

Order: the retries of one name go in mid order; one round tries a name's broadcasts oldest first and stops at the
first failure, so a newer one never overtakes an older one that is still pending. A newer broadcast pushed by the
endpoint while an older one is still being retried may reach that comet first: the SDKs accept a late public mid
(``comet.subscriber_public.PublicWindow``).

Safety: a retry may reach clients that already have the broadcast (the comet answered but the web timed out; a
client that fetched it by pmid after reconnecting). The SDKs drop a repeated public message by (gid, mid); a
legacy gopush-cluster client may show it twice.

Bounds: at most ``max_pending_retries`` broadcasts wait for retries; one more drops the oldest one's retries (logged).
Counters (``stats()``, the web ``/stat`` ``"broadcast_retries"``): ``pending`` broadcasts with retries waiting;
``succeeded``, ``given_up``, ``left_view`` and ``dropped`` count (broadcast, comet) retries.
"""
from __future__ import annotations

import asyncio
import logging
import time
from bisect import insort
from typing import Awaitable, Callable, Sequence

from thirdparty.rpc_client import RemoteError, RpcUnavailable
from web.cluster import ClusterView, CometNode
from web.config import BroadcastConfig

log = logging.getLogger(__name__)

Clock = Callable[[], float]
Sleep = Callable[[float], Awaitable[None]]


class PendingBroadcast:
    """One broadcast some comets failed: the comet names still to reach and the attempts made at each."""

    __slots__ = ("mid", "msg", "deadline", "attempts", "reasons", "dropped")

    def __init__(self, mid: int, msg: bytes, names: Sequence[str], deadline: float) -> None:
        self.mid = mid
        self.msg = msg
        self.deadline = deadline
        self.attempts = {name: 1 for name in names}      # still to reach -> attempts so far (the first push: 1)
        self.reasons = {name: "first push failed" for name in names}   # the last failure, for the give-up line
        self.dropped = False


class BroadcastRetries:
    """The pending retries of one web node and the task that works them (see the module docstring)."""

    def __init__(self, view: ClusterView, config: BroadcastConfig, rpc_timeout: float = 3.0, *,
                 clock: Clock = time.monotonic, sleep: Sleep = asyncio.sleep) -> None:
        self.view = view
        self.config = config
        self.rpc_timeout = rpc_timeout
        self._clock = clock
        self._sleep = sleep
        self._pending: list[PendingBroadcast] = []   # ascending mid
        self._task: asyncio.Task[None] | None = None
        self._closed = False
        self.succeeded = 0
        self.given_up = 0
        self.left_view = 0
        self.dropped = 0

    @property
    def pending(self) -> int:
        return len(self._pending)

    def stats(self) -> dict[str, int]:
        return {"pending": len(self._pending), "succeeded": self.succeeded, "given_up": self.given_up,
                "left_view": self.left_view, "dropped": self.dropped}

    def add(self, mid: int, msg: bytes, names: Sequence[str]) -> None:
        """Retry broadcast ``mid`` to the comets ``names`` (which failed it) in the background."""
        if not names or self.config.retry_for <= 0:
            return
        if self._closed:
            log.warning("mid=%d: node stopping, comet(s) %s not retried", mid, ", ".join(names))
            return
        insort(self._pending, PendingBroadcast(mid, msg, names, self._clock() + self.config.retry_for),
               key=lambda item: item.mid)
        while len(self._pending) > self.config.max_pending_retries:
            oldest = self._pending.pop(0)
            oldest.dropped = True
            self.dropped += len(oldest.attempts)
            log.warning("mid=%d: broadcast retry dropped for comet(s) %s: more than %d broadcasts have retries "
                        "pending", oldest.mid, ", ".join(sorted(oldest.attempts)), self.config.max_pending_retries)
        if self._task is None or self._task.done():
            self._task = asyncio.get_running_loop().create_task(self._run(), name="web-broadcast-retries")

    async def close(self) -> None:
        """Cancel the retries still pending (the node is stopping); later :meth:`add` calls are ignored."""
        self._closed = True
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            try:
                await task
            except asyncio.CancelledError:
                pass
        if self._pending:
            log.info("mid=%d: node stopping, retries of %d broadcast(s) cancelled, the last mid=%d",
                     self._pending[0].mid, len(self._pending), self._pending[-1].mid)
            self._pending.clear()

    async def _run(self) -> None:
        while self._pending:
            await self._sleep(self.config.retry_interval)
            await self._round()

    async def _round(self) -> None:
        """Give up what is past its deadline, then try every name's pending broadcasts, names concurrently."""
        now = self._clock()
        by_name: dict[str, list[PendingBroadcast]] = {}
        for item in self._pending:
            if now >= item.deadline:
                for name, attempts in item.attempts.items():
                    self.given_up += 1
                    log.warning("mid=%d: broadcast retry to comet %s given up after %d attempt(s) in %.1fs (%s); "
                                "its clients get it when they next catch up, if it was stored", item.mid, name,
                                attempts, self.config.retry_for, item.reasons[name])
                item.attempts.clear()
                continue
            for name in item.attempts:
                by_name.setdefault(name, []).append(item)
        self._pending = [item for item in self._pending if item.attempts]
        await asyncio.gather(*(self._retry_name(name, items) for name, items in by_name.items()))
        self._pending = [item for item in self._pending if item.attempts]

    async def _retry_name(self, name: str, items: list[PendingBroadcast]) -> None:
        """Try ``items`` (ascending mid) at the current node named ``name``; stop at the first failure."""
        for item in items:
            if item.dropped or name not in item.attempts:
                continue
            node = self.view.nodes.get(name)
            if node is None:
                for left in items:
                    if left.attempts.pop(name, None) is not None and not left.dropped:
                        self.left_view += 1
                        log.debug("mid=%d: comet %s left the view, broadcast retry stopped", left.mid, name)
                return
            item.attempts[name] += 1
            online = await self._push(node, item)
            if online is None:
                return
            attempt = item.attempts.pop(name, 0)
            if not item.dropped and attempt:
                self.succeeded += 1
                log.info("mid=%d: broadcast retry to comet %s succeeded at attempt %d, %d connection(s)", item.mid,
                         name, attempt, online)

    async def _push(self, node: CometNode, item: PendingBroadcast) -> int | None:
        """The comet's answer to one retry, or None (the reason kept for the give-up line, logged at DEBUG)."""
        client = node.client()
        if client is None:
            reason = "no rpc address"
        else:
            try:
                return await asyncio.wait_for(client.push_public(item.mid, item.msg), self.rpc_timeout)
            except TimeoutError:
                reason = f"no answer within {self.rpc_timeout:.1f}s"
            except RpcUnavailable as exc:
                reason = f"node unreachable ({exc})"
            except RemoteError as exc:
                reason = f"error {exc.code} {exc.message}"
            except Exception:  # noqa: BLE001 - a bug with one comet must not stop the other retries
                log.error("mid=%d: comet %s PushPublic retry: unexpected failure", item.mid, node.name,
                          exc_info=True)
                reason = "unexpected failure"
        item.reasons[node.name] = reason
        log.debug("mid=%d: comet %s PushPublic retry %d failed: %s", item.mid, node.name,
                  item.attempts.get(node.name, 0), reason)
        return None
