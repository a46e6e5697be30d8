"""Consistent hashing of subscriber keys onto node names: a ketama ring (uhashring) built from ``{name: weight}``.

:Status: used by web (key -> comet node), comet (is this key mine?) and message (key -> Redis shard).

Every role must map a key to the same node, in every process, so the ring is a pure function of the
``{name: weight}`` map: uhashring's ketama continuum is md5-based (no per-process hash seed), and nodes are added in
sorted name order so that even a collision between two nodes' points resolves the same way whatever order the map
was built in. A node with weight ``w`` gets a share of the points proportional to ``w``. A Ring is immutable; build
a new one when the node set changes (only the keys of the nodes that changed move).
"""
from __future__ import annotations

from typing import Mapping

from uhashring import HashRing

MAX_WEIGHT = 1000


class Ring:
    """Immutable ketama ring; ``get(key)`` is the name of the node that owns ``key``, or None when empty."""

    __slots__ = ("_nodes", "_ring")

    def __init__(self, nodes: Mapping[str, int]) -> None:
        checked: dict[str, int] = {}
        for name in sorted(nodes):
            weight = nodes[name]
            if not isinstance(name, str) or not name:
                raise ValueError(f"ring node name must be a non-empty string, got {name!r}")
            if isinstance(weight, bool) or not isinstance(weight, int) or not 1 <= weight <= MAX_WEIGHT:
                raise ValueError(f"ring node {name}: weight must be an int in 1..{MAX_WEIGHT}, got {weight!r}")
            checked[name] = weight
        self._nodes = checked
        self._ring = HashRing({name: {"weight": weight} for name, weight in checked.items()}, hash_fn="ketama")

    @property
    def nodes(self) -> dict[str, int]:
        """A copy of the ``{name: weight}`` map the ring was built from."""
        return dict(self._nodes)

    def get(self, key: str) -> str | None:
        if not self._nodes:
            return None
        node: str = self._ring.get_node(key)
        return node

    def __len__(self) -> int:
        return len(self._nodes)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Ring):
            return NotImplemented
        return self._nodes == other._nodes

    def __hash__(self) -> int:
        return hash(frozenset(self._nodes.items()))

    def __repr__(self) -> str:
        return f"Ring({self._nodes!r})"
