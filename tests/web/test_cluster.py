"""web.cluster.ClusterView: ring picks, grouping, lazy clients, live updates (fakes, no server)."""
from __future__ import annotations

from collections import Counter

from comet.client import CometNodeInfo
from tests.web.fakes import FakeComet, FakeMessage, node_info
from thirdparty.ring import Ring
from web.cluster import ClusterView


class Factory:
    """Makes one FakeComet per call and remembers them all."""

    def __init__(self) -> None:
        self.made: list[FakeComet] = []

    def __call__(self, info: CometNodeInfo) -> FakeComet:
        comet = FakeComet(info.name)
        self.made.append(comet)
        return comet


def make_view(*infos: CometNodeInfo) -> tuple[ClusterView, Factory]:
    factory = Factory()
    return ClusterView(list(infos), FakeMessage(), factory), factory


KEYS = [f"user{i}" for i in range(2000)]


def test_pick_follows_the_shared_ketama_ring() -> None:
    view, _ = make_view(node_info("n1"), node_info("n2", weight=2), node_info("n3"))
    ring = Ring({"n1": 1, "n2": 2, "n3": 1})
    for key in KEYS[:200]:
        node = view.pick(key)
        assert node is not None and node.name == ring.get(key)


def test_weights_shift_the_share_of_keys() -> None:
    view, _ = make_view(node_info("n1"), node_info("n2", weight=3))
    share = Counter(view.pick(key).name for key in KEYS)  # type: ignore[union-attr]
    assert share["n2"] > share["n1"] > 0


def test_empty_view_picks_nothing() -> None:
    view, _ = make_view()
    assert view.pick("a") is None
    assert view.group(["a", "b"]) == ({}, ["a", "b"])


def test_group_keeps_input_order_per_node() -> None:
    view, _ = make_view(node_info("n1"), node_info("n2"))
    groups, unrouted = view.group(KEYS[:100])
    assert unrouted == []
    assert sorted(key for keys in groups.values() for key in keys) == sorted(KEYS[:100])
    for node, keys in groups.items():
        assert keys == [key for key in KEYS[:100] if view.pick(key) is node]
    assert {node.name for node in groups} == {"n1", "n2"}


def test_clients_are_created_lazily_once_per_node() -> None:
    view, factory = make_view(node_info("n1"), node_info("n2"))
    assert factory.made == []
    node = view.nodes["n1"]
    assert node.client() is node.client()
    assert [comet.name for comet in factory.made] == ["n1"]


def test_node_without_rpc_address_has_no_client() -> None:
    view, factory = make_view(node_info("n1", rpc=[], ws=["h:1"]))
    node = view.nodes["n1"]
    assert node.client() is None and factory.made == []
    assert node.addresses(websocket=True) == ["h:1"] and node.addresses(websocket=False) == []


def test_nodes_with_bad_weight_or_twice_listed_are_left_out() -> None:
    view, _ = make_view(node_info("n1", weight=0), node_info("n2"), node_info("n2", rpc=["x:1"]))
    assert list(view.nodes) == ["n2"]
    assert view.nodes["n2"].info.rpc == ["127.0.0.1:1"]
    assert all(view.pick(key).name == "n2" for key in KEYS[:50])  # type: ignore[union-attr]


async def test_update_keeps_unchanged_clients_and_closes_retired_ones() -> None:
    view, factory = make_view(node_info("n1", rpc=["a:1"]), node_info("n2", rpc=["b:1"]),
                              node_info("n3", rpc=["c:1"]))
    clients = {name: node.client() for name, node in view.nodes.items()}
    old_n1 = view.nodes["n1"]
    await view.update([node_info("n1", rpc=["a:1"], ws=["new:1"]),   # same rpc: client kept, info refreshed
                       node_info("n2", rpc=["b:2"]),                 # rpc moved: new client, old one closed
                       node_info("n4", rpc=["d:1"])])                # n3 gone: closed
    assert set(view.nodes) == {"n1", "n2", "n4"}
    assert view.nodes["n1"] is old_n1 and view.nodes["n1"].client() is clients["n1"]
    assert view.nodes["n1"].addresses(websocket=True) == ["new:1"]
    assert not clients["n1"].closed  # type: ignore[union-attr]
    assert clients["n2"].closed and clients["n3"].closed  # type: ignore[union-attr]
    assert view.nodes["n2"].client() is not clients["n2"]
    ring = Ring({"n1": 1, "n2": 1, "n4": 1})
    assert all(view.pick(key).name == ring.get(key) for key in KEYS[:200])  # type: ignore[union-attr]
    assert len(factory.made) == 4


async def test_update_to_empty_and_back() -> None:
    view, _ = make_view(node_info("n1"))
    client = view.nodes["n1"].client()
    await view.update([])
    assert view.pick("a") is None and client.closed  # type: ignore[union-attr]
    await view.update([node_info("n1")])
    assert view.pick("a").name == "n1"  # type: ignore[union-attr]


async def test_close_closes_every_client_and_the_message_client() -> None:
    message = FakeMessage()
    factory = Factory()
    view = ClusterView([node_info("n1"), node_info("n2")], message, factory)
    made = [view.nodes[name].client() for name in ("n1", "n2")]
    await view.close()
    assert all(comet.closed for comet in made) and message.closed  # type: ignore[union-attr]
    assert view.pick("a") is None


async def test_server_json_is_made_once_and_follows_an_address_change() -> None:
    view, _ = make_view(node_info("n1", tcp=["10.0.0.1:1", "10.0.0.2:1"], ws=[]))
    node = view.pick("a")
    assert node is not None
    assert node.server_json(websocket=False, every=False) == b'{"server":"10.0.0.1:1"}'
    assert node.server_json(websocket=False, every=True) == b'{"server":["10.0.0.1:1","10.0.0.2:1"]}'
    assert node.server_json(websocket=True, every=False) is None
    await view.update([node_info("n1", tcp=["10.0.0.9:1"], ws=["10.0.0.9:2"])])
    assert view.pick("a") is node  # same RPC endpoint: the same node, refreshed addresses
    assert node.server_json(websocket=False, every=False) == b'{"server":"10.0.0.9:1"}'
    assert node.server_json(websocket=True, every=True) == b'{"server":["10.0.0.9:2"]}'
