"""PURE: which public messages (gid 1, broadcasts) the subscriber SDK accepts, and where their catch-up starts.

Private mids reach a connection strictly in order (one lock per key on the comet), so a cursor is enough for them
(``subscriber_logic.Cursor``). Public mids are not: two web nodes that broadcast at the same moment can reach a
comet in either order, so a broadcast may arrive with a mid below the newest one already handed out. A
:class:`PublicWindow` therefore remembers the mids of the last ``size`` (1024) public messages it accepted and
accepts a public mid when

* it is above ``floor``: the ``last_pmid`` the subscriber started from, raised to each mid that leaves the
  window (a mid at or below it may have been handed out already and can no longer be told apart), and
* it is not one of the remembered mids (the same broadcast live and fetched, or fetched twice).

Each catch-up asks for the public messages after :meth:`PublicWindow.fetch_from`: ``LATE_WINDOW`` (10 s in mid
units of 100 ns) below the newest accepted one, never below the floor, so a broadcast that was late by up to 10 s
while the connection was down is fetched too and the ones already seen are dropped.
"""
from __future__ import annotations

from collections import deque

PUBLIC_WINDOW = 1024        # public mids remembered for the duplicate check
LATE_WINDOW = 10 ** 8       # how far below the newest public mid a catch-up starts (10 s of 100 ns mid units)


class PublicWindow:
    """The public mids accepted lately; see the module docstring."""

    __slots__ = ("floor", "newest", "size", "_order", "_seen")

    def __init__(self, floor: int = 0, size: int = PUBLIC_WINDOW) -> None:
        if floor < 0 or size < 1:
            raise ValueError("PublicWindow: need floor >= 0 and size >= 1")
        self.floor = floor      # mids at or below it are refused
        self.newest = floor     # the highest mid accepted (the floor while none was)
        self.size = size
        self._order: deque[int] = deque()
        self._seen: set[int] = set()

    def __len__(self) -> int:
        return len(self._order)

    def is_new(self, mid: int) -> bool:
        """True when ``mid`` would be accepted."""
        return mid > self.floor and mid not in self._seen

    def accept(self, mid: int) -> bool:
        """Accept ``mid`` (True) unless it is a duplicate or too old to tell (False)."""
        if not self.is_new(mid):
            return False
        self._seen.add(mid)
        self._order.append(mid)
        if mid > self.newest:
            self.newest = mid
        if len(self._order) > self.size:
            oldest = self._order.popleft()
            self._seen.discard(oldest)
            if oldest > self.floor:
                self.floor = oldest
        return True

    def fetch_from(self) -> int:
        """The ``p`` of the next catch-up fetch: public messages above it are asked for."""
        return max(self.floor, self.newest - LATE_WINDOW)
