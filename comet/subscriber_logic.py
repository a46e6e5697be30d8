"""PURE delivery and reconnect logic of the subscriber SDK: what is new, in which order, and when to retry.

No sockets, no event loop, no clock: the subscriber (``comet/subscriber.py``) calls these with what it saw.

* :class:`Cursor` — the last mid accepted **per gid** (0 = private messages; 1 = public ones, once broadcast
  exists: each gid is its own mid sequence and its own fetch). A message is new when its mid is above the
  cursor of its gid; anything else is a duplicate (a message both delivered live and fetched, or re-sent
  after a reconnect) and is dropped. So no mid is handed out twice and each gid's mids go out ascending.
* :class:`LiveBuffer` — live messages that arrive while the catch-up fetch after a (re)connect runs. The
  fetched pages and these are two ascending streams; :meth:`LiveBuffer.before` releases the live ones that
  sort before the next fetched message, so the merge keeps mid order (an online-only message, pushed with
  expire 0 and never in a fetch, keeps its place instead of being overtaken by a stored newer one).
* :class:`ReconnectPolicy` / :class:`Backoff` — jittered exponential backoff: attempt n waits
  ``min(maximum, initial * multiplier**n)`` scaled by a random factor in ``[1 - jitter, 1]``, so that the
  clients of a comet that died do not all come back in the same millisecond.
"""
from __future__ import annotations

import random
from collections import deque
from dataclasses import dataclass
from typing import Mapping, Sequence

from comet.subscriber_api import GID_PRIVATE, Message


class Cursor:
    """The last accepted mid of each gid."""

    __slots__ = ("_last",)

    def __init__(self, positions: Mapping[int, int] | None = None) -> None:
        self._last: dict[int, int] = dict(positions or {})

    def get(self, gid: int = GID_PRIVATE) -> int:
        """The last accepted mid of ``gid`` (0 when none)."""
        return self._last.get(gid, 0)

    def accept(self, message: Message) -> bool:
        """True (and the cursor moves) when ``message`` is new; False for a duplicate or an older mid."""
        if message.mid <= self._last.get(message.gid, 0):
            return False
        self._last[message.gid] = message.mid
        return True

    def positions(self) -> dict[int, int]:
        """``{gid: last mid}`` (a copy)."""
        return dict(self._last)


class LiveBuffer:
    """Live messages held back while a catch-up fetch runs (each gid's in arrival order = mid order)."""

    __slots__ = ("_messages",)

    def __init__(self) -> None:
        self._messages: deque[Message] = deque()

    def __len__(self) -> int:
        return len(self._messages)

    def add(self, message: Message) -> None:
        self._messages.append(message)

    def before(self, gid: int, mid: int) -> list[Message]:
        """Take the held messages of ``gid`` whose mid is below ``mid`` (those that go out before it)."""
        taken: list[Message] = []
        kept: deque[Message] = deque()
        for message in self._messages:
            if message.gid == gid and message.mid < mid:
                taken.append(message)
            else:
                kept.append(message)
        self._messages = kept
        return taken

    def drain(self) -> list[Message]:
        """Take every held message."""
        taken = list(self._messages)
        self._messages.clear()
        return taken

    def clear(self) -> None:
        self._messages.clear()


def merge_page(live: LiveBuffer, page: Sequence[Message]) -> list[Message]:
    """One fetched page interleaved with the held live messages that sort before each of its messages, in the
    order they go out (duplicates included: the Cursor drops them)."""
    merged: list[Message] = []
    for message in page:
        merged.extend(live.before(message.gid, message.mid))
        merged.append(message)
    return merged


@dataclass(frozen=True)
class ReconnectPolicy:
    """How the subscriber waits between connection attempts (seconds)."""

    initial: float = 0.5        # wait after the first failure
    maximum: float = 30.0       # the wait never grows past this
    multiplier: float = 2.0     # each further failure multiplies the wait by this
    jitter: float = 0.5         # the wait is scaled by a random factor in [1 - jitter, 1]
    max_attempts: int = 0       # consecutive failed attempts before giving up; 0 = never give up

    def __post_init__(self) -> None:
        if not 0 < self.initial <= self.maximum:
            raise ValueError("ReconnectPolicy: need 0 < initial <= maximum")
        if self.multiplier < 1:
            raise ValueError("ReconnectPolicy: multiplier must be >= 1")
        if not 0 <= self.jitter <= 1:
            raise ValueError("ReconnectPolicy: jitter must be 0..1")
        if self.max_attempts < 0:
            raise ValueError("ReconnectPolicy: max_attempts must be >= 0")


class Backoff:
    """Consecutive failures and the wait before the next attempt; :meth:`reset` after a success."""

    __slots__ = ("policy", "failures", "_random")

    def __init__(self, policy: ReconnectPolicy, rng: random.Random | None = None) -> None:
        self.policy = policy
        self.failures = 0
        self._random = rng or random.Random()

    def next_delay(self) -> float:
        """Count one more failure; the seconds to wait before the next attempt."""
        policy = self.policy
        base = min(policy.maximum, policy.initial * policy.multiplier ** min(self.failures, 64))
        self.failures += 1
        return base * (1.0 - policy.jitter * self._random.random())

    @property
    def exhausted(self) -> bool:
        """True when ``max_attempts`` consecutive attempts failed."""
        return 0 < self.policy.max_attempts <= self.failures

    def reset(self) -> None:
        self.failures = 0
