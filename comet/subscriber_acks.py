"""PURE: which private messages the subscriber SDK acknowledges to its comet, and when (docs/protocol.md,
"Acknowledging messages").

A message is acknowledged once the application has taken it (the iterator handed it out, or ``on_message``
returned), on the connection that is open at that moment, and only when the comet will take the ack: the comet
accepts an ack from a connection only for a mid above the key's last mid when that connection subscribed and not
above the last mid written to the key, and it keeps nothing else to tell. The one mid a client knows to be in that
range is a mid the comet wrote to this very connection, so an :class:`Acker` acknowledges

* a message that came live on the current connection, when the application takes it;
* a message the application took from a catch-up fetch, when its live copy then arrives on the current
  connection (pushed after the subscribe, fetched before the comet's copy was read);

and never a fetched message the current connection did not carry (stored before the subscribe: the comet would
count the ack as unknown), never a public message (gid 1: broadcasts are not acknowledged), never one the
application did not take (an online-only message dropped to keep mid order). What it remembers is bounded
(``MEMORY`` mids each).

Acks are not written at once but queued: the comet closes a connection that sends more than
``limits.max_acks_per_read`` (256) acks in one read, and an application that takes a burst of waiting messages
takes them in one event-loop pass. The session writes :meth:`Acker.next_batch` (at most ``ACKS_PER_WRITE``) per
write and pauses between writes; past ``MAX_QUEUED`` waiting acks the oldest are dropped (counted in
``dropped``: a push waiting for one of them times out). The session attaches a ``wake`` callback once subscribed
(the subscribe carried a version, which acks need) and detaches it when the connection ends (waiting acks are
dropped with it: they were for that connection).
"""
from __future__ import annotations

from collections import OrderedDict, deque
from typing import Callable

from comet.subscriber_api import GID_PRIVATE, Message

MEMORY = 1024          # mids remembered: carried live and not taken yet; taken lately
MAX_QUEUED = 4096      # acks waiting to be written; past it the oldest are dropped
ACKS_PER_WRITE = 32    # acks in one write: far below the comet's 256 per read, even if a few writes coalesce


class Acker:
    """Acknowledgements of one subscriber; see the module docstring."""

    def __init__(self, enabled: bool = True, memory: int = MEMORY, max_queued: int = MAX_QUEUED) -> None:
        self.enabled = enabled
        self.memory, self.max_queued = memory, max_queued
        self.sent = 0          # acks handed to the writer
        self.dropped = 0       # acks dropped because MAX_QUEUED were waiting
        self.queue: deque[int] = deque()   # acks waiting to be written, oldest first
        self._wake: Callable[[], None] | None = None
        self._carried: OrderedDict[int, None] = OrderedDict()   # live on the current connection, not taken yet
        self._taken: OrderedDict[int, None] = OrderedDict()     # taken by the application lately

    def attach(self, wake: Callable[[], None]) -> None:
        """A new connection is subscribed: acks are queued from now on, and ``wake`` is called for each."""
        self._wake = wake if self.enabled else None
        self._carried.clear()
        self.queue.clear()

    def detach(self) -> None:
        """The connection ended: nothing it carried can be acknowledged any more."""
        self._wake = None
        self._carried.clear()
        self.queue.clear()

    def next_batch(self, limit: int = ACKS_PER_WRITE) -> list[int]:
        """Take the oldest ``limit`` waiting acks (for one write)."""
        batch = [self.queue.popleft() for _ in range(min(limit, len(self.queue)))]
        self.sent += len(batch)
        return batch

    def carried(self, message: Message) -> None:
        """The current connection delivered ``message`` (new or a duplicate)."""
        if self._wake is None or message.gid != GID_PRIVATE:
            return
        if message.mid in self._taken:    # its fetched copy was taken already
            self._ack(message.mid)
            return
        self._carried[message.mid] = None
        if len(self._carried) > self.memory:
            self._carried.popitem(last=False)

    def taken(self, message: Message) -> None:
        """The application took ``message``."""
        if not self.enabled or message.gid != GID_PRIVATE:
            return
        self._taken[message.mid] = None
        if len(self._taken) > self.memory:
            self._taken.popitem(last=False)
        if self._wake is not None and message.mid in self._carried:
            del self._carried[message.mid]
            self._ack(message.mid)

    def _ack(self, mid: int) -> None:
        assert self._wake is not None
        self.queue.append(mid)
        if len(self.queue) > self.max_queued:
            self.queue.popleft()
            self.dropped += 1
        self._wake()
