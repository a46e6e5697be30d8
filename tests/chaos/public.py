"""The public side of a chaos subscriber: broadcasts (gid 1), received live and fetched with ``p=``, counted.

A client keeps public messages apart from its key's own (docs/protocol.md): public mids come from their own
sequence, and the SDK (``comet/subscriber_public.py``) accepts one when its :class:`PublicWindow` has not seen it
and starts each catch-up ``LATE_WINDOW`` (10 s of mids) below the newest one it accepted. This module uses that
same window, so the chaos run exercises the SDK's rule too, and counts what it sees:

* ``duplicates``: a public mid received live twice (on any connections), or fetched twice in one catch-up, or a
  fetch that returned a public mid at or below the ``p`` it asked from — never expected;
* ``out_of_order``: on one connection, a public mid not above the previous public one. The chaos cluster has one
  web node, which sends its broadcasts one at a time, so every comet writes them in mid order — never expected,
  except for a broadcast whose ``fc`` named this connection's comet: the web retries it there in the background
  (web/broadcast_retry.py), so it may come after newer ones (the verdict allows exactly those, counted
  ``retried_late``; the mids are kept in ``out_of_order_mids``);
* ``repeats``: a public message already accepted, again: the live copy of one a catch-up fetched, or one fetched
  again because a catch-up looks 10 s back; dropped by (gid, mid), expected (the final catch-up from ``p=0``
  repeats them all: not counted);
* ``late``: a public mid accepted below the newest accepted one (it was missed live and a later catch-up found
  it, e.g. a broadcast a failing comet did not write); allowed, counted;
* ``trimmed``: a fetch reply flagged ``ptrimmed`` — never expected (the chaos cluster keeps every broadcast).

Arrival order across connections and fetches is not checked: the verdict wants the set, each mid once.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Collection

from comet.subscriber_public import PublicWindow
from tests.chaos.cluster import ChaosCluster

NO_PRIVATE = (1 << 63) - 1   # an m= above every mid: a fetch of public messages only


@dataclass
class PublicTally:
    """What one subscriber saw of the broadcasts, summed over its sessions."""

    live: int = 0                # public frames received from comets
    fetched: int = 0             # public messages returned by fetches
    accepted_live: int = 0
    accepted_fetched: int = 0    # by a catch-up after a (re)connect
    accepted_final: int = 0      # by the final catch-up from p=0 at the end of the run
    repeats: int = 0
    late: int = 0
    duplicates: int = 0
    out_of_order: int = 0
    trimmed: int = 0

    def __post_init__(self) -> None:
        self.out_of_order_mids: list[int] = []   # the public mids that came after a newer one on one connection


class PublicSide:
    """The public mids one subscriber accepted (``accepted``, in arrival order) and how they came."""

    def __init__(self, name: str, note: Callable[[str], None]) -> None:
        self.name = name
        self._note = note
        self.window = PublicWindow()
        self.tally = PublicTally()
        self.accepted: list[int] = []
        self.final_from: int | None = None   # len(accepted) when the final catch-up began
        self._accepted: set[int] = set()
        self._live_seen: set[int] = set()
        self._fetched: set[int] = set()

    def fetch_from(self) -> int:
        """The ``p`` of the next catch-up (the SDK's rule: 10 s below the newest accepted mid)."""
        return self.window.fetch_from()

    def received(self, mid: int, previous: int) -> None:
        """A public frame on a connection whose previous public mid was ``previous``: checked, not yet taken."""
        self.tally.live += 1
        if mid in self._live_seen:
            self.tally.duplicates += 1
            self._note(f"{self.name}: public mid {mid} received live twice")
        elif mid <= previous:
            self.tally.out_of_order += 1
            self.tally.out_of_order_mids.append(mid)
            self._note(f"{self.name}: public mid {mid} after {previous} on one connection")
        self._live_seen.add(mid)

    def fetched_page(self, asked: int, mids: list[int], trimmed: bool, seen: set[int]) -> list[int]:
        """One fetch reply's public mids (``asked``: its ``p``; ``seen``: this catch-up's earlier pages): the ones
        to take; the others counted."""
        self.tally.fetched += len(mids)
        if trimmed:
            self.tally.trimmed += 1
            self._note(f"{self.name}: public fetch after {asked} was trimmed")
        keep: list[int] = []
        for mid in mids:
            if mid <= asked or mid in seen:
                self.tally.duplicates += 1
                self._note(f"{self.name}: public fetch after {asked} returned {mid} (again)")
                continue
            seen.add(mid)
            self._fetched.add(mid)
            keep.append(mid)
        return keep

    def take(self, mid: int, *, live: bool) -> None:
        """Accept ``mid`` unless it was accepted already (then a repeat, dropped by (gid, mid))."""
        newest = self.window.newest
        if not self.window.accept(mid):
            if live and mid not in self._fetched:
                return   # a second live copy: counted as a duplicate when it was received
            if self.final_from is None:
                self.tally.repeats += 1   # the final catch-up from p=0 repeats every one: not counted
            return
        self.accepted.append(mid)
        self._accepted.add(mid)
        if mid < newest:
            self.tally.late += 1
        if live:
            self.tally.accepted_live += 1
        elif self.final_from is not None:
            self.tally.accepted_final += 1
        else:
            self.tally.accepted_fetched += 1

    def has_all(self, mids: Collection[int]) -> bool:
        return all(mid in self._accepted for mid in mids)

    def before_final(self) -> set[int]:
        """The public mids accepted live or by a catch-up of a session (not by the final catch-up)."""
        return set(self.accepted[:self.final_from])


async def stored_public(cluster: ChaosCluster, key: str) -> list[tuple[int, Any]]:
    """Every stored public (mid, message), paging with ``p`` (``key``: any valid key, its own messages are not
    asked for); AssertionError on a non-zero ret or a trimmed reply."""
    out: list[tuple[int, Any]] = []
    after = 0
    while True:
        reply = await cluster.get("/1/msg/get", {"k": key, "m": NO_PRIVATE, "p": after})
        assert reply.get("ret") == 0, f"public fetch after {after}: {reply}"
        data = reply.get("data") or {}
        assert not data.get("ptrimmed"), f"public fetch after {after} was trimmed: {reply}"
        batch = [(int(item["mid"]), item["msg"]) for item in data.get("pmsgs", [])]
        if not batch:
            return out
        out.extend(batch)
        after = batch[-1][0]

