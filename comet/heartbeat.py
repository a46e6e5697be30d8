"""PURE deadline bookkeeping for every connection of a node: one periodic tick instead of one timer each.

A comet holds up to hundreds of thousands of idle connections, each with a deadline (the first-packet timeout,
then heartbeat + grace after every heartbeat). :class:`TimerWheel` files each item in a slot of ``resolution``
seconds; ``tick(now)``, driven by one periodic callback of the node, returns the items whose deadline has
passed. Moving a deadline later (every heartbeat) is one dict write: the item stays in its old slot and is
re-filed only when that slot comes due ("lazy re-scheduling"); moving it earlier re-files it at once. An item
expires at the first tick with ``now >= deadline`` rounded up to the resolution: never early, and at most one
resolution plus one tick period late.

The clock is passed in (``now``), so the wheel is tested without sleeping; the node uses ``time.monotonic``.
"""
from __future__ import annotations

import math
from typing import Callable, Generic, Hashable, Protocol, TypeVar

T = TypeVar("T", bound=Hashable)


class TimerWheel(Generic[T]):
    """Deadlines of hashable items, checked in slots of ``resolution`` seconds."""

    __slots__ = ("resolution", "_deadlines", "_slot_of", "_slots", "_next_slot")

    def __init__(self, resolution: float, now: float = 0.0) -> None:
        if resolution <= 0:
            raise ValueError(f"resolution must be > 0, got {resolution}")
        self.resolution = resolution
        self._deadlines: dict[T, float] = {}
        self._slot_of: dict[T, int] = {}
        self._slots: dict[int, set[T]] = {}
        self._next_slot = self._floor(now) + 1  # lowest slot not processed yet

    def __len__(self) -> int:
        return len(self._deadlines)

    def __contains__(self, item: object) -> bool:
        return item in self._deadlines

    def deadline(self, item: T) -> float | None:
        """The item's current deadline, or None when it is not scheduled."""
        return self._deadlines.get(item)

    def schedule(self, item: T, deadline: float) -> None:
        """Set (or move) the item's deadline."""
        self._deadlines[item] = deadline
        slot = max(self._ceil(deadline), self._next_slot)
        filed = self._slot_of.get(item)
        if filed is None:
            self._file(item, slot)
        elif slot < filed:
            self._unfile(item, filed)
            self._file(item, slot)
        # else: a later deadline; the item is re-filed when its current slot comes due

    def cancel(self, item: T) -> None:
        """Forget the item (its connection closed); unknown items are ignored."""
        if self._deadlines.pop(item, None) is not None:
            self._unfile(item, self._slot_of[item])

    def tick(self, now: float) -> list[T]:
        """Remove and return the items whose deadline is <= ``now`` (slot-rounded), oldest slot first."""
        current = self._floor(now)
        if current < self._next_slot:
            return []
        if current - self._next_slot < len(self._slots):
            due = [slot for slot in range(self._next_slot, current + 1) if slot in self._slots]
        else:  # a long pause (or a sparse wheel): look at the filed slots rather than every slot in between
            due = sorted(slot for slot in self._slots if slot <= current)
        self._next_slot = current + 1
        expired: list[T] = []
        for slot in due:
            for item in self._slots.pop(slot):
                del self._slot_of[item]
                deadline = self._deadlines[item]
                if deadline <= now:
                    del self._deadlines[item]
                    expired.append(item)
                else:
                    self._file(item, max(self._ceil(deadline), self._next_slot))
        return expired

    def _file(self, item: T, slot: int) -> None:
        self._slot_of[item] = slot
        bucket = self._slots.get(slot)
        if bucket is None:
            self._slots[slot] = {item}
        else:
            bucket.add(item)

    def _unfile(self, item: T, slot: int) -> None:
        del self._slot_of[item]
        bucket = self._slots[slot]
        bucket.discard(item)
        if not bucket:
            del self._slots[slot]

    def _floor(self, when: float) -> int:
        return math.floor(when / self.resolution)

    def _ceil(self, when: float) -> int:
        return math.ceil(when / self.resolution)


class Expirable(Protocol):
    """What the node's tick calls when an item's deadline passes."""

    def on_timeout(self) -> None: ...

    def __hash__(self) -> int: ...


E = TypeVar("E", bound=Expirable)


class Deadlines(Generic[E]):
    """The two deadlines of a client connection on one wheel, with the clock and limits bound in."""

    __slots__ = ("wheel", "clock", "first_packet_timeout", "heartbeat_grace")

    def __init__(self, wheel: TimerWheel[E], clock: Callable[[], float], *, first_packet_timeout: float,
                 heartbeat_grace: float) -> None:
        self.wheel = wheel
        self.clock = clock
        self.first_packet_timeout = first_packet_timeout
        self.heartbeat_grace = heartbeat_grace

    def first_packet(self, item: E) -> None:
        """The connection has ``first_packet_timeout`` seconds to subscribe."""
        self.wheel.schedule(item, self.clock() + self.first_packet_timeout)

    def heartbeat(self, item: E, heartbeat: float) -> None:
        """A heartbeat (or the subscribe) arrived: the next one is due within heartbeat + grace seconds."""
        self.wheel.schedule(item, self.clock() + heartbeat + self.heartbeat_grace)

    def after(self, item: E, seconds: float) -> None:
        """The item's deadline is ``seconds`` from now (e.g. for a peer to answer a close frame)."""
        self.wheel.schedule(item, self.clock() + seconds)

    def cancel(self, item: E) -> None:
        self.wheel.cancel(item)

    def expire(self) -> int:
        """Call ``on_timeout`` of every overdue item; return how many there were."""
        expired = self.wheel.tick(self.clock())
        for item in expired:
            item.on_timeout()
        return len(expired)
