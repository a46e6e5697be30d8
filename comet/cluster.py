"""CometMembership: a comet node's place in the cluster on ZooKeeper (DESIGN.md section 7), and the comet layout.

Layout: ``<root>/comet/<name>/<token>_<10-digit sequence>``, ephemeral, holding :class:`comet.client.CometNodeInfo`
JSON (``{"name", "weight", "rpc", "tcp", "ws"}``). Of the entries of one name whose JSON is valid, the lowest
sequence is the name's **active** comet and the others are its standbys, in sequence order; the ring is
``{name: weight}`` over the names that have an active entry. :func:`active_entries` is that rule, and web nodes
(``web/zk_view.py``) use the same function, so every process agrees on it.

A membership calls, on the event loop:

* ``on_ring(ring)`` with the cluster's ``{name: weight}`` whenever it changes (standbys get it too);
* ``on_active(active)`` when this process becomes its name's active comet, or stops being it;
* ``on_fenced(reason)`` right after ``on_active(False)`` when that happened for any reason but :meth:`stop`: the
  session was lost, the own znode was deleted, or ZooKeeper was unreachable for longer than ``suspended_grace``
  (default a third of the session timeout, so that this process stops serving before the server can expire its
  session and promote a standby). The owner must stop serving at once: close every client connection and answer
  ``-n`` until ``on_active(True)``.

After a loss the process registers again with a new, higher sequence: it comes back as a standby. If the session
survived (ZooKeeper came back in time), it is active again as soon as a fresh view shows its znode still first.
"""
from __future__ import annotations

import asyncio
import functools
import logging
import time
from typing import Any, Callable, Mapping

from comet.client import CometNodeInfo
from thirdparty.ring import MAX_WEIGHT
from thirdparty.zk import CONNECTED, SUSPENDED, Registration, Watch, ZkSession, by_sequence, lowest_valid

log = logging.getLogger(__name__)

COMET_DIR = "comet"
CLOSE_FENCED = "fenced"        # close reason (stats) of the connections a fenced comet drops
CLOSE_MOVED = "key moved"      # close reason of a connection whose key the ring gave to another name
SUSPENDED_GRACE_SHARE = 1 / 3   # of the session timeout (kazoo notices a silent drop within 2/3 of it)


def parse_entry(data: bytes, name: str) -> CometNodeInfo:
    """A comet znode's data as the ring can use it; ValueError when it cannot."""
    info = CometNodeInfo.from_json(data, name)
    if info.weight > MAX_WEIGHT:
        raise ValueError(f"comet {name}: weight {info.weight} is above {MAX_WEIGHT}")
    return info


def active_entries(tree: Mapping[str, Mapping[str, bytes]]) -> dict[str, tuple[str, CometNodeInfo]]:
    """``{name: (znode name, info)}`` of each name's active comet in a ``<root>/comet`` tree snapshot."""
    active: dict[str, tuple[str, CometNodeInfo]] = {}
    for name in sorted(tree):
        found = lowest_valid(tree[name], functools.partial(parse_entry, name=name), where=name)
        if found is not None:
            active[name] = found
    return active


def ring_of(active: Mapping[str, tuple[str, CometNodeInfo]]) -> dict[str, int]:
    return {name: info.weight for name, (_child, info) in active.items()}


class CometMembership:
    """Registers ``info`` under ``<root>/comet/<info.name>/`` and follows the whole comet tree."""

    def __init__(self, session: ZkSession, info: CometNodeInfo, *, on_active: Callable[[bool], None],
                 on_ring: Callable[[dict[str, int]], None], on_fenced: Callable[[str], None],
                 suspended_grace: float | None = None) -> None:
        self.info = info
        self.ring: dict[str, int] | None = None
        self.active = False
        self._session = session
        self._on_active = on_active
        self._on_ring = on_ring
        self._on_fenced = on_fenced
        self._grace = session.session_timeout * SUSPENDED_GRACE_SHARE if suspended_grace is None else suspended_grace
        self._tree: dict[str, dict[str, bytes]] = {}
        self._registration: Registration | None = None
        self._watch: Watch | None = None
        self._grace_timer: asyncio.TimerHandle | None = None
        self._unreachable = False
        self._stopped = False
        self.fenced: tuple[float, str] | None = None  # (wall-clock time, cause) of the last fencing

    @property
    def name(self) -> str:
        return self.info.name

    @property
    def znode(self) -> str | None:
        """This process's znode path while registered."""
        return self._registration.path if self._registration is not None else None

    async def start(self, timeout: float | None = None) -> None:
        """Register, then wait (up to ``timeout``, default the session timeout) for the first view of the tree."""
        session = self._session
        session.on_state(self._session_state)
        self._registration = await session.register(
            session.path(COMET_DIR, self.name), self.info.to_json(), timeout=timeout,
            on_lost=self._evaluate, on_registered=lambda _child: self._evaluate())
        self._watch = session.watch_tree(session.path(COMET_DIR), self._tree_changed)
        await self._watch.wait_synced(session.session_timeout if timeout is None else timeout)
        log.info("node=%s znode=%s: member of the cluster, %s", self.name, self.znode,
                 "active" if self.active else "standby")

    async def stop(self) -> None:
        """Leave the cluster: stop being active (no fencing call), delete the znode, stop watching."""
        self._stopped = True
        self._cancel_grace_timer()
        self._evaluate()
        if self._registration is not None:
            await self._registration.cancel()
        if self._watch is not None:
            await self._watch.cancel()

    def state(self) -> dict[str, Any]:
        """This process's place in the cluster, for ``GET /stat``: role, znode, the ring and its weight share."""
        if self._stopped:
            role = "leaving"
        elif self.active:
            role = "active"
        elif self._unreachable:
            role = "unreachable"
        elif self._registration is None or self._registration.child is None:
            role = "unregistered"
        else:
            role = "standby"
        ring = self.ring or {}
        total = sum(ring.values())
        return {"mode": "zookeeper", "role": role, "znode": self.znode, "ring": dict(ring),
                "weight_share": round(ring.get(self.name, 0) / total, 4) if total and self.active else 0.0,
                "standbys": self.standbys(),
                "last_fenced": None if self.fenced is None else {"at": self.fenced[0], "cause": self.fenced[1]}}

    def standbys(self) -> list[str]:
        """Znode names of this name's entries after the active one, in promotion order (for logs and tests)."""
        children = self._tree.get(self.name, {})
        active = active_entries({self.name: children}).get(self.name)
        return [child for child in by_sequence(children) if active is None or child != active[0]]

    def _tree_changed(self, tree: dict[str, dict[str, bytes]]) -> None:
        self._tree = tree
        ring = ring_of(active_entries(tree))
        if ring != self.ring:
            self.ring = ring
            log.info("node=%s: ring %s", self.name, ring)
            self._call(self._on_ring, ring)
        self._evaluate()

    def _session_state(self, state: str) -> None:
        if state == SUSPENDED:
            if self._grace_timer is None and not self._stopped:
                self._grace_timer = asyncio.get_running_loop().call_later(self._grace, self._grace_ran_out)
            return
        self._cancel_grace_timer()
        if state == CONNECTED and self._unreachable:
            self._unreachable = False
            self._evaluate()

    def _grace_ran_out(self) -> None:
        self._grace_timer = None
        self._unreachable = True
        self._evaluate(f"ZooKeeper unreachable for {self._grace:.1f}s")

    def _cancel_grace_timer(self) -> None:
        if self._grace_timer is not None:
            self._grace_timer.cancel()
            self._grace_timer = None

    def _evaluate(self, cause: str = "") -> None:
        """Recompute ``active``; ``cause`` (else the view) says why, should it turn false."""
        child = self._registration.child if self._registration is not None else None
        first = active_entries({self.name: self._tree.get(self.name, {})}).get(self.name)
        active = (not self._stopped and not self._unreachable and child is not None and first is not None
                  and first[0] == child)
        if active == self.active:
            return
        if not cause:
            mine = self._tree.get(self.name, {})
            cause = "own znode gone" if child not in mine or first is None else f"{first[0]} is first for {self.name}"
        self.active = active
        if active:
            log.info("node=%s znode=%s: active", self.name, child)
            self._call(self._on_active, True)
            return
        self._call(self._on_active, False)
        if self._stopped:
            log.info("node=%s: leaving the cluster", self.name)
            return
        log.warning("node=%s: fenced (%s): stop serving", self.name, cause)
        self.fenced = (time.time(), cause)
        self._call(self._on_fenced, cause)

    def _call(self, callback: Callable[..., None], *args: object) -> None:
        try:
            callback(*args)
        except Exception:  # noqa: BLE001 - the owner's bug must not stop the membership
            log.error("node=%s: membership callback %r failed", self.name, callback, exc_info=True)

