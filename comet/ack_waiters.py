"""Pushes that wait for their outcome (``wait=acked|written``), and the optional ``meta`` param that asks for it.

``CometRPC.PushPrivate(key, msg, expire, meta)`` / ``PushPrivates(keys, msg, expire, meta)`` take an optional
fourth param, a map (docs/architecture.md, "Internal RPC"):

``at``       float   when the web node accepted the push (Unix seconds), for the trace
``src``      str     who pushed (the back end's address), for the trace
``wait``     str     ``"written"`` or ``"acked"``: answer with the outcome of each key
``timeout``  float   seconds to wait for an ack (with ``wait="acked"``), 0 < timeout <= ``[limits] max_push_wait``

The outcome of a key: ``written`` (written to at least one connection), ``offline`` (no connection took it; it
is stored for a later fetch when expire > 0), ``acked`` (one of the connections it was written to acknowledged
its mid in time) or ``timeout`` (none did).

State lives per *waiting push*, never per connection: :class:`AckWaiters` maps ``(key, mid)`` to the future of
the push and the ids of the connections the message was written to; an ack resolves it only when it comes from
one of them. At most ``max_waiters`` pushes wait at once; one more is answered ``written`` at once and counted in
``refused`` (the node never queues unbounded state for a client that does not ack).
"""
from __future__ import annotations

import asyncio
import math
from typing import Any, NamedTuple

ACKED, WRITTEN, OFFLINE, TIMEOUT = "acked", "written", "offline", "timeout"
WAITS = (ACKED, WRITTEN)
MAX_SRC = 200


class PushMeta(NamedTuple):
    """The parsed ``meta`` param: who pushed when (for the trace) and what to wait for (a tuple: it is built on
    every traced push)."""

    accepted: tuple[float, str] | None = None  # (at, src) from the web node
    wait: str = ""                              # "", "written" or "acked"
    timeout: float = 0.0


NO_META = PushMeta()


class MetaError(ValueError):
    """The ``meta`` param is malformed (CometRPC answers 65534)."""


def parse_meta(meta: Any, max_timeout: float) -> PushMeta:
    """Check ``meta`` (None or a map, see the module docstring); MetaError naming the bad field."""
    if meta is None:
        return NO_META
    if not isinstance(meta, dict):
        raise MetaError("meta must be a map")
    if len(meta) == 2 and type(meta.get("at")) is float and type(meta.get("src")) is str:  # a traced push
        return PushMeta((meta["at"], meta["src"][:MAX_SRC]), "", 0.0) if math.isfinite(meta["at"]) else _bad_at()
    at, src, wait, timeout = meta.get("at"), meta.get("src", ""), meta.get("wait", ""), meta.get("timeout", 5.0)
    accepted = None
    if at is not None:
        if not isinstance(at, (int, float)) or isinstance(at, bool) or not math.isfinite(at):
            raise MetaError("meta.at must be a number")
        if not isinstance(src, str):
            raise MetaError("meta.src must be a string")
        accepted = (float(at), src[:MAX_SRC])
    if wait not in ("", *WAITS):
        raise MetaError(f"meta.wait must be one of {', '.join(WAITS)}")
    if not isinstance(timeout, (int, float)) or isinstance(timeout, bool) or not 0 < timeout <= max_timeout:
        raise MetaError(f"meta.timeout must be a number of seconds in (0, {max_timeout}]")
    return PushMeta(accepted, wait, float(timeout))


def _bad_at() -> PushMeta:
    raise MetaError("meta.at must be a number")


class _Waiter:
    __slots__ = ("future", "conns", "timer")

    def __init__(self, future: asyncio.Future[str], conns: frozenset[int], timer: asyncio.TimerHandle) -> None:
        self.future = future
        self.conns = conns
        self.timer = timer


class AckWaiters:
    """The pushes waiting for an ack, by (key, mid)."""

    def __init__(self, max_waiters: int) -> None:
        self.max_waiters = max_waiters
        self._waiting: dict[tuple[str, int], _Waiter] = {}
        self.acked = 0      # waits that ended with an ack
        self.timeouts = 0   # waits that ended without one
        self.refused = 0    # waits not started: max_waiters were waiting

    def __len__(self) -> int:
        return len(self._waiting)

    def expect(self, key: str, mid: int, conns: list[int], timeout: float) -> asyncio.Future[str] | None:
        """Start waiting for an ack of ``mid`` from one of ``conns``; the future gets ACKED or TIMEOUT.
        None when ``max_waiters`` pushes are waiting already."""
        if len(self._waiting) >= self.max_waiters:
            self.refused += 1
            return None
        loop = asyncio.get_running_loop()
        future: asyncio.Future[str] = loop.create_future()
        timer = loop.call_later(timeout, self._expire, key, mid)
        self._waiting[(key, mid)] = _Waiter(future, frozenset(conns), timer)
        return future

    def ack(self, key: str, mid: int, conn_id: int) -> bool:
        """An ack arrived; True when it ended a wait (it came from a connection the message was written to)."""
        waiter = self._waiting.get((key, mid))
        if waiter is None or conn_id not in waiter.conns:
            return False
        del self._waiting[(key, mid)]
        waiter.timer.cancel()
        if not waiter.future.done():
            waiter.future.set_result(ACKED)
            self.acked += 1
        return True

    def cancel_all(self) -> None:
        """End every wait with TIMEOUT (the node is stopping)."""
        waiting, self._waiting = self._waiting, {}
        for waiter in waiting.values():
            waiter.timer.cancel()
            if not waiter.future.done():
                waiter.future.set_result(TIMEOUT)
                self.timeouts += 1

    def _expire(self, key: str, mid: int) -> None:
        waiter = self._waiting.pop((key, mid), None)
        if waiter is not None and not waiter.future.done():
            waiter.future.set_result(TIMEOUT)
            self.timeouts += 1

    def stats(self) -> dict[str, int]:
        return {"waiting": len(self._waiting), "acked": self.acked, "timeouts": self.timeouts,
                "refused": self.refused}
