"""TraceBuffer: a bounded queue of trace records, sent in batches to an async sink; it never blocks its caller.

:Status: used by the comet and web nodes (records sent to ``MessageRPC.Trace``) and by the message node (records
written to its trace store).

Every role appends trace records on its hot path (one per push, ack, subscribe, ...), so :meth:`TraceBuffer.add`
is one ``deque.append`` and a flag test: no future, no task, no timer per record. The first record added to an
empty buffer schedules one flush ``flush_interval`` seconds later (a buffer that receives nothing costs nothing);
a buffer that reaches ``max_batch`` records flushes on the next loop pass. A flush hands batches of up to
``max_batch`` records to ``sink`` (an ``async`` callable), one batch at a time; records added meanwhile wait for
the next flush.

Tracing must never slow or fail what it traces, so the buffer is bounded and lossy: with ``max_pending`` records
waiting, adding one more drops the oldest, and a batch whose sink call fails (the message node is down, a call
timed out) is dropped. Both are counted (``dropped``) and logged at most once per ``LOG_INTERVAL`` seconds.
Records are opaque here; the roles define them (``message/trace_model.py``).
"""
from __future__ import annotations

import asyncio
import logging
import time
from collections import deque
from dataclasses import dataclass
from typing import Any, Awaitable, Callable

from thirdparty.confload import ConfigError

log = logging.getLogger(__name__)

LOG_INTERVAL = 60.0  # seconds between two warnings about dropped records
Sink = Callable[[list[Any]], Awaitable[object]]


@dataclass(frozen=True)
class TraceBufferConfig:
    """``[trace]`` settings every role shares: whether to trace, and how records are batched."""

    enabled: bool = True           # record the delivery trace (docs/architecture.md, "Delivery trace")
    flush_interval: float = 0.1    # seconds a record may wait before its batch is sent
    max_batch: int = 512           # records per batch; a full batch is sent at once
    max_pending: int = 20000       # records held while the sink is slow or down; more drops the oldest

    def check(self) -> None:
        if not 0.001 <= self.flush_interval <= 10:
            raise ConfigError("flush_interval must be 0.001..10 seconds")
        if self.max_batch < 1:
            raise ConfigError("max_batch must be >= 1")
        if self.max_pending < self.max_batch:
            raise ConfigError("max_pending must be >= max_batch")


class TraceBuffer:
    """Records waiting for ``sink``; see the module docstring. Create and use it on the event loop."""

    def __init__(self, name: str, sink: Sink, *, flush_interval: float = 0.1, max_batch: int = 512,
                 max_pending: int = 20000, clock: Callable[[], float] = time.monotonic) -> None:
        if flush_interval <= 0 or max_batch < 1 or max_pending < max_batch:
            raise ValueError("need flush_interval > 0, max_batch >= 1 and max_pending >= max_batch")
        self.name = name
        self._sink = sink
        self.flush_interval = flush_interval
        self.max_batch = max_batch
        self.max_pending = max_pending
        self._clock = clock
        self._pending: deque[Any] = deque()
        self._scheduled: asyncio.Handle | None = None
        self._sending: asyncio.Task[None] | None = None
        self._closed = False
        self.added = 0     # records accepted by add()
        self.sent = 0      # records the sink took
        self.dropped = 0   # records lost: buffer full, sink failed, or closed with records left
        self._logged = (0, float("-inf"))  # (dropped at the last warning, when)

    def __len__(self) -> int:
        return len(self._pending)

    def stats(self) -> dict[str, int]:
        return {"added": self.added, "sent": self.sent, "dropped": self.dropped, "pending": len(self._pending)}

    def add(self, record: Any) -> None:
        """Queue one record (dropping the oldest when ``max_pending`` are waiting). Never raises, never awaits."""
        pending = self._pending
        if self._closed:
            self.dropped += 1
            return
        if len(pending) >= self.max_pending:
            pending.popleft()
            self.dropped += 1
        pending.append(record)
        self.added += 1
        if self._scheduled is None and self._sending is None:
            loop = asyncio.get_running_loop()
            delay = 0.0 if len(pending) >= self.max_batch else self.flush_interval
            self._scheduled = loop.call_later(delay, self._start_sending)
        elif len(pending) == self.max_batch and self._scheduled is not None:
            self._scheduled.cancel()
            self._scheduled = asyncio.get_running_loop().call_soon(self._start_sending)

    async def flush(self) -> None:
        """Send everything queued now (after a send already running) and wait until it is sent or dropped."""
        while True:
            if self._sending is None:
                if not self._pending or self._closed:
                    return
                if self._scheduled is not None:
                    self._scheduled.cancel()
                self._start_sending()
            sending = self._sending
            assert sending is not None
            await asyncio.shield(sending)

    async def close(self, timeout: float = 1.0) -> None:
        """Stop accepting records; try to send what is queued for up to ``timeout`` seconds, drop the rest."""
        if self._closed:
            return
        try:
            await asyncio.wait_for(self.flush(), timeout)
        except asyncio.TimeoutError:
            log.warning("trace=%s: %d record(s) not sent before closing", self.name, len(self._pending))
        self._closed = True
        if self._sending is not None:
            self._sending.cancel()
            await asyncio.gather(self._sending, return_exceptions=True)
        self.dropped += len(self._pending)
        self._pending.clear()

    def _start_sending(self) -> None:
        self._scheduled = None
        if self._sending is None and self._pending:
            self._sending = asyncio.get_running_loop().create_task(self._send_all())

    async def _send_all(self) -> None:
        try:
            while self._pending:
                count = min(len(self._pending), self.max_batch)
                batch = [self._pending.popleft() for _ in range(count)]
                try:
                    await self._sink(batch)
                except asyncio.CancelledError:
                    self.dropped += len(batch)
                    raise
                except Exception as exc:  # noqa: BLE001 - the sink's failure must never reach the traced path
                    self.dropped += len(batch)
                    self._warn(f"{type(exc).__name__}: {exc}")
                else:
                    self.sent += len(batch)
        finally:
            self._sending = None
            if self._pending and not self._closed:  # added while the last batch was in flight
                self._scheduled = asyncio.get_running_loop().call_later(self.flush_interval, self._start_sending)

    def _warn(self, why: str) -> None:
        logged, when = self._logged
        now = self._clock()
        if now - when >= LOG_INTERVAL:
            self._logged = (self.dropped, now)
            log.warning("trace=%s: %d trace record(s) dropped (%d since the last report): %s", self.name,
                        self.dropped, self.dropped - logged, why)
