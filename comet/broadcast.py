"""Broadcaster: the comet's queue of public messages (gid 1), written to every connection without starving pushes.

``CometRPC.PushPublic(mid, msg)`` calls :meth:`Broadcaster.broadcast`, which checks the arguments, queues the
broadcast and answers at once with the number of connections the node holds at that moment. One task works the
FIFO queue (at most ``max_queued`` broadcasts, the one being written included; one more is refused with 65535
"broadcast queue full"). When a broadcast's turn comes, the task takes a snapshot of the node's connections (a
list: the connections of that moment), encodes the message once (``EncodedMessage(msg, mid, GID_PUBLIC)``: the
same four wire forms as a private message, shared by every connection) and writes it to ``chunk`` connections per
event-loop pass, then yields, so the private pushes that arrived meanwhile run between two chunks. A token bucket
refilled at ``rate`` per second, holding 20 ms of it (at least a chunk, so a late wake-up costs no pace), bounds the
connection writes of all broadcasts together; when it is short of a chunk the task sleeps until it is not.
(Measured, benchmarks/broadcast.py: chunks of 512 kept a private push waiting p99 23 ms behind a broadcast, 128
keep it 7-11 ms at the same pace.)

Connections are not locked: a public message may come before or after a private one written at the same time
(different gids, separate cursors in the SDK). A connection closed since the snapshot is skipped, told cheaply by
its ``close_reason`` (set when a close starts, also for a client's close, never cleared), without a table lookup.
A connection whose ``send`` returns False overflowed its queue and is being closed, as in a private push: it leaves
the table and is counted skipped too. Connections opened after the snapshot do not get the message: clients fetch
public messages they missed by pmid (one opened between the queueing and the snapshot may get it live and in its
catch-up fetch; the SDKs drop the second copy by (gid, mid)). Public messages are not acked and not traced per key.

Counters (``stats()``, comet ``/stat`` ``"broadcast"`` and ``/metrics``): ``queued`` broadcasts accepted,
``done`` written, ``written`` / ``skipped`` connections, ``refused`` (queue full), ``dropped`` (queued or being
written when the node stopped), ``pending`` (queued now, the one being written included);
``queued == done + dropped + pending``. A broadcast with no connection to write to (a standby comet) is queued and done at once.

Memory: only the broadcast being written holds a list of connections (8 bytes per connection: 8 MB per million);
queued ones hold their encoded message. The list is built in one pass when the broadcast starts (about 0.1 s of
the event loop per million connections, measured here, once per broadcast).
"""
from __future__ import annotations

import asyncio
import logging
import time
from collections import deque
from typing import Any, Awaitable, Callable

from comet.channel import ChannelTable, Connection
from comet.message_codec import GID_PUBLIC, EncodedMessage
from comet.push_args import check_message
from thirdparty.rpc_codec import ERR_INTERNAL, ERR_PARAM, RpcError

log = logging.getLogger(__name__)

MAX_MID = (1 << 63) - 1
TOKEN_SLACK = 1e-6  # tokens short by float rounding after a sleep of exactly the computed wait count as there
BURST_SECONDS = 0.02  # the bucket holds this much of the rate (at least a chunk): a late wake-up costs no pace
MIN_WAIT = 0.001    # shortest sleep for tokens: the loop's timers are not finer, and no spinning on tiny waits

Clock = Callable[[], float]
Sleep = Callable[[float], Awaitable[None]]


class TokenBucket:
    """PURE: ``capacity`` tokens, refilled at ``rate`` per second; the caller passes the time (monotonic seconds)."""

    __slots__ = ("rate", "capacity", "tokens", "stamp")

    def __init__(self, rate: float, capacity: float, now: float) -> None:
        if rate <= 0 or capacity <= 0:
            raise ValueError("rate and capacity must be > 0")
        self.rate = rate
        self.capacity = capacity
        self.tokens = capacity  # full at start: the first chunk goes out at once
        self.stamp = now

    def take(self, count: int, now: float) -> float:
        """Take ``count`` (<= capacity) tokens and return 0.0, or take none and return the seconds until there are
        ``count`` of them."""
        if now > self.stamp:
            self.tokens = min(self.capacity, self.tokens + (now - self.stamp) * self.rate)
            self.stamp = now
        if self.tokens + TOKEN_SLACK >= count:
            self.tokens = max(0.0, self.tokens - count)
            return 0.0
        return (count - self.tokens) / self.rate


class QueuedBroadcast:
    """One broadcast waiting or being written: the encoded message (the snapshot is taken when it starts)."""

    __slots__ = ("message",)

    def __init__(self, message: EncodedMessage) -> None:
        self.message = message


class Broadcaster:
    """The FIFO of broadcasts of one comet node and the task that writes them (see the module docstring)."""

    def __init__(self, table: ChannelTable, *, max_queued: int, chunk: int, rate: float, max_message_bytes: int,
                 clock: Clock = time.monotonic, sleep: Sleep = asyncio.sleep) -> None:
        if max_queued < 1 or chunk < 1:
            raise ValueError("max_queued and chunk must be >= 1")
        self._table = table
        self.max_queued = max_queued
        self.chunk = chunk
        self.max_message_bytes = max_message_bytes
        self._clock = clock
        self._sleep = sleep
        self._bucket = TokenBucket(rate, max(chunk, rate * BURST_SECONDS), clock())
        self._queue: deque[QueuedBroadcast] = deque()
        self._wakeup = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._stopped = False
        self.queued = 0
        self.done = 0
        self.written = 0
        self.skipped = 0
        self.refused = 0
        self.dropped = 0

    @property
    def pending(self) -> int:
        return len(self._queue)

    def stats(self) -> dict[str, int]:
        return {"queued": self.queued, "done": self.done, "written": self.written, "skipped": self.skipped,
                "refused": self.refused, "dropped": self.dropped, "pending": len(self._queue)}

    def start(self) -> None:
        """Start the worker task (on the running loop)."""
        if self._task is None and not self._stopped:
            self._task = asyncio.get_running_loop().create_task(self._run(), name="comet-broadcaster")

    async def stop(self) -> None:
        """Cancel the worker and drop what is still queued (counted in ``dropped``); later broadcasts get 65535."""
        self._stopped = True
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            try:
                await task
            except asyncio.CancelledError:
                pass
        if self._queue:
            log.warning("mid=%d: node stopping, %d queued broadcast(s) dropped, the last mid=%d",
                        self._queue[0].message.mid, len(self._queue), self._queue[-1].message.mid)
            self.dropped += len(self._queue)
            self._queue.clear()

    def broadcast(self, mid: Any, msg: Any) -> int:
        """Check the arguments and queue the broadcast; the number of connections the node holds now. ``RpcError``: 65534 bad mid or message, 65535 queue full or node stopping."""
        if not isinstance(mid, int) or isinstance(mid, bool) or not 1 <= mid <= MAX_MID:
            raise RpcError(ERR_PARAM, f"mid must be an integer 1..{MAX_MID}, not {mid!r:.40}")
        check_message(msg, 0, self.max_message_bytes)
        if self._stopped:
            raise RpcError(ERR_INTERNAL, "comet is stopping")
        online = self._table.connection_count
        if not online:
            self.queued += 1
            self.done += 1
            log.info("mid=%d: broadcast: no connection on this node", mid)
            return 0
        if len(self._queue) >= self.max_queued:
            self.refused += 1
            # the RpcServer logs the error reply (a warning); this line adds the mid
            log.debug("mid=%d: broadcast refused, %d broadcast(s) already queued", mid, len(self._queue))
            raise RpcError(ERR_INTERNAL, "broadcast queue full")
        self._queue.append(QueuedBroadcast(EncodedMessage(msg, mid, GID_PUBLIC)))
        self.queued += 1
        self._wakeup.set()
        log.info("mid=%d: broadcast queued, %d connection(s) now, %d broadcast(s) pending", mid, online,
                 len(self._queue))
        return online

    async def _run(self) -> None:
        queue = self._queue
        while True:
            if not queue:
                self._wakeup.clear()
                await self._wakeup.wait()
                continue
            item = queue[0]
            try:
                await self._write(item)
            except Exception:  # a bug must not stop the broadcasts after this one
                log.error("mid=%d: broadcast failed", item.message.mid, exc_info=True)
            queue.popleft()  # not reached when cancelled: stop() counts it as dropped
            self.done += 1

    async def _write(self, item: QueuedBroadcast) -> None:
        """Write one broadcast, ``chunk`` connections per loop pass, paced by the token bucket."""
        message, conns = item.message, self._table.connections()
        total, index, written = len(conns), 0, 0
        chunk, bucket, table = self.chunk, self._bucket, self._table
        while index < total:
            count = min(chunk, total - index)
            wait = bucket.take(count, self._clock())
            if wait > 0:
                await self._sleep(max(wait, MIN_WAIT))
                continue
            end = index + count
            sent = 0
            for conn in conns[index:end]:
                if getattr(conn, "close_reason", None) is not None:
                    continue  # closed (or closing) since the snapshot
                if conn.send(message):
                    sent += 1
                else:  # overflowed: it is being closed, as in a private push
                    table.remove(conn)
                    log.debug("key=%s mid=%d conn=%d: broadcast not written, connection closing", conn.key,
                              message.mid, conn.conn_id)
            written += sent
            self.written += sent
            self.skipped += count - sent
            index = end
            await self._sleep(0)  # private pushes that arrived meanwhile run now
        log.info("mid=%d: broadcast written to %d connection(s), %d skipped (closed or overflowed)", message.mid,
                 written, total - written)
