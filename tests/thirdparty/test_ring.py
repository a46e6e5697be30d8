"""Ring: ketama mapping of keys to node names, stable across processes and node-map order."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from collections import Counter

import pytest

from thirdparty.ring import Ring

KEYS = [f"user:{i}" for i in range(10_000)]
ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def mapping(ring):
    return [ring.get(key) for key in KEYS]


def test_empty_ring_has_no_owner():
    ring = Ring({})
    assert ring.get("alice") is None
    assert ring.nodes == {}
    assert len(ring) == 0


def test_single_node_owns_everything():
    ring = Ring({"node1": 3})
    assert set(mapping(ring)) == {"node1"}


def test_same_map_same_mapping_whatever_the_insertion_order():
    nodes = {"node1": 1, "node2": 2, "node3": 1}
    reordered = dict(reversed(list(nodes.items())))
    assert mapping(Ring(nodes)) == mapping(Ring(reordered))
    assert Ring(nodes) == Ring(reordered)
    assert hash(Ring(nodes)) == hash(Ring(reordered))
    assert Ring(nodes) != Ring({"node1": 1, "node2": 1, "node3": 1})


def test_same_mapping_in_another_process():
    # A fresh interpreter with a different str-hash seed must agree on every key.
    nodes = {"node1": 1, "node2": 2, "node3": 1}
    script = ("import json, sys; from thirdparty.ring import Ring; nodes, keys = json.load(sys.stdin); "
              "ring = Ring(nodes); print(json.dumps([ring.get(k) for k in keys]))")
    env = dict(os.environ, PYTHONHASHSEED="12345", PYTHONPATH=ROOT)
    out = subprocess.run([sys.executable, "-c", script], input=json.dumps([nodes, KEYS]), env=env,
                         capture_output=True, text=True, check=True, timeout=30).stdout
    assert json.loads(out) == mapping(Ring(nodes))


def test_known_assignments_do_not_change():
    # Pinned so that an upgrade of uhashring or of this module that moves keys is noticed: nodes of different
    # versions in one cluster must agree on where a key lives.
    ring = Ring({"node1": 1, "node2": 2, "node3": 1})
    assert {key: ring.get(key) for key in ["alice", "bob", "carol", "dave", "erin", "frank", "grace", "heidi"]} == {
        "alice": "node1", "bob": "node1", "carol": "node3", "dave": "node3",
        "erin": "node2", "frank": "node2", "grace": "node2", "heidi": "node2"}


def test_adding_a_third_node_moves_about_a_third_of_the_keys():
    before = mapping(Ring({"node1": 1, "node2": 1}))
    after = mapping(Ring({"node1": 1, "node2": 1, "node3": 1}))
    moved = [(old, new) for old, new in zip(before, after) if old != new]
    assert 0.25 < len(moved) / len(KEYS) < 0.42
    # Only keys that the new node takes over move; none hop between the old nodes.
    assert {new for _, new in moved} == {"node3"}


def test_removing_a_node_moves_only_its_keys():
    before = mapping(Ring({"node1": 1, "node2": 1, "node3": 1}))
    after = mapping(Ring({"node1": 1, "node3": 1}))
    for old, new in zip(before, after):
        if old != "node2":
            assert new == old


def test_weight_sets_the_share():
    counts = Counter(mapping(Ring({"small": 1, "big": 3})))
    assert 0.65 < counts["big"] / len(KEYS) < 0.85


@pytest.mark.parametrize("nodes", [
    {"node1": 0}, {"node1": -1}, {"node1": True}, {"node1": 1.5}, {"node1": "1"}, {"": 1}, {"node1": 10**6},
])
def test_bad_nodes_are_rejected(nodes):
    with pytest.raises(ValueError):
        Ring(nodes)


def test_nodes_is_a_copy():
    ring = Ring({"node1": 1})
    ring.nodes["node2"] = 1
    assert ring.nodes == {"node1": 1}
