"""comet.cluster against a real ZooKeeper: active/standby per name, the ring, promotion, fencing."""
from __future__ import annotations

import asyncio
import json

import pytest

from comet.client import CometNodeInfo
from comet.cluster import CometMembership, active_entries, ring_of
from tests.helpers import eventually
from tests.zookeeper import ZooKeeperServer, expire_session

pytestmark = pytest.mark.zookeeper


def info(name: str, port: int, weight: int = 1) -> CometNodeInfo:
    return CometNodeInfo(name=name, weight=weight, rpc=[f"127.0.0.1:{port}"], tcp=[f"127.0.0.1:{port + 1}"],
                         ws=[f"127.0.0.1:{port + 2}"])


class Member:
    """A CometMembership and what its callbacks said."""

    def __init__(self, membership: CometMembership) -> None:
        self.membership = membership
        self.events: list[tuple[str, object]] = []

    @property
    def active(self) -> bool:
        return self.membership.active

    def fences(self) -> list[object]:
        return [value for kind, value in self.events if kind == "fenced"]


@pytest.fixture
def join(zk_sessions):
    """``await join(info, **kwargs)`` -> a started Member on its own ZooKeeper session."""
    members: list[Member] = []

    async def make(node: CometNodeInfo, session_timeout: float = 1.0, **kwargs) -> Member:
        session = await zk_sessions(session_timeout=session_timeout)
        member = None

        def record(kind: str):
            return lambda value: member.events.append((kind, value))

        membership = CometMembership(session, node, on_active=record("active"), on_ring=record("ring"),
                                     on_fenced=record("fenced"), **kwargs)
        member = Member(membership)
        member.session = session
        await membership.start(timeout=5.0)
        members.append(member)
        return member

    yield make


# -- the rule ----------------------------------------------------------------------------------------------

def test_active_entries_takes_the_lowest_valid_sequence_of_each_name() -> None:
    good = info("a", 7000, weight=3)
    tree = {
        "a": {"t1_0000000004": good.to_json(), "t2_0000000002": b"not json", "t3_0000000009": info("a", 1).to_json()},
        "b": {"t4_0000000001": json.dumps({"weight": 5000, "rpc": ["h:1"]}).encode()},   # weight above 1000
        "c": {},
    }
    active = active_entries(tree)
    assert list(active) == ["a"]
    child, found = active["a"]
    assert child == "t1_0000000004" and found == good
    assert ring_of(active) == {"a": 3}


# -- membership against ZooKeeper --------------------------------------------------------------------------

async def test_a_lone_comet_is_active_and_alone_in_the_ring(join) -> None:
    one = await join(info("node1", 7000, weight=2))
    assert one.active and one.membership.ring == {"node1": 2}
    assert one.events == [("ring", {"node1": 2}), ("active", True)]


async def test_two_names_share_the_ring(join) -> None:
    one = await join(info("node1", 7000))
    two = await join(info("node2", 7100, weight=3))
    assert one.active and two.active
    await eventually(lambda: one.membership.ring == two.membership.ring == {"node1": 1, "node2": 3})


async def test_a_second_process_of_a_name_is_a_standby_and_takes_over_on_stop(join) -> None:
    first = await join(info("node1", 7000))
    second = await join(info("node1", 7200))
    assert first.active and not second.active
    assert second.membership.ring == {"node1": 1}
    standby = second.membership.znode.rsplit("/", 1)[1]
    await eventually(lambda: first.membership.standbys() == [standby])   # first's own view catches up
    assert first.membership.state()["role"] == "active" and second.membership.state()["role"] == "standby"
    assert first.membership.state()["standbys"] == [standby] and first.membership.state()["weight_share"] == 1.0
    assert second.membership.state()["weight_share"] == 0.0
    await first.membership.stop()
    await eventually(lambda: second.active)
    assert first.membership.state()["role"] == "leaving" and second.membership.state()["role"] == "active"
    assert first.events[-1] == ("active", False) and first.fences() == []   # a clean stop is no fencing
    assert second.events[-1] == ("active", True)


async def test_session_expiry_fences_the_active_and_promotes_the_standby(join, zk_server: ZooKeeperServer) -> None:
    first = await join(info("node1", 7000))
    second = await join(info("node1", 7200))
    old_znode = first.membership.znode
    await asyncio.to_thread(expire_session, zk_server.hosts, first.session.client_id)
    await eventually(lambda: first.fences() == ["session lost"])
    assert first.membership.state()["last_fenced"]["cause"] == "session lost"
    await eventually(lambda: second.active)
    # the fenced process registers again, behind the new active one
    await eventually(lambda: first.membership.znode not in (None, old_znode))
    await asyncio.sleep(0.1)
    assert not first.active
    assert first.events[-2:] == [("active", False), ("fenced", "session lost")]


async def test_a_deleted_znode_fences_its_process(join) -> None:
    first = await join(info("node1", 7000))
    second = await join(info("node1", 7200))
    await second.session.delete(first.membership.znode)   # an operator's manual failover
    await eventually(lambda: len(first.fences()) == 1 and second.active)
    assert first.fences()[0] in ("znode deleted", "own znode gone")   # the znode's watch or the tree's, first
    await asyncio.sleep(0.1)
    assert len(first.fences()) == 1
    assert not first.active and first.membership.znode is not None   # back as a standby


async def test_zookeeper_out_of_reach_longer_than_the_grace_fences_then_recovers(join,
                                                                                  zk_server: ZooKeeperServer) -> None:
    one = await join(info("node1", 7000), session_timeout=4.0, suspended_grace=0.2)
    await asyncio.to_thread(zk_server.stop)
    try:
        await eventually(lambda: one.fences() == ["ZooKeeper unreachable for 0.2s"])
        assert not one.active
    finally:
        await asyncio.to_thread(zk_server.start)
    await eventually(lambda: one.active, timeout=8)   # the session survived: its znode is still first
    assert one.fences() == ["ZooKeeper unreachable for 0.2s"]


async def test_a_zookeeper_restart_within_the_grace_is_not_noticed(join, zk_server: ZooKeeperServer) -> None:
    one = await join(info("node1", 7000), session_timeout=4.0, suspended_grace=30.0)
    session_id = one.session.client_id[0]
    await asyncio.to_thread(zk_server.restart)
    await eventually(lambda: one.session.state == "connected" and one.active, timeout=12)
    if one.session.client_id[0] == session_id:   # the usual case: the session outlived the restart
        assert one.fences() == [] and one.events == [("ring", {"node1": 1}), ("active", True)]
    else:   # a reconnect attempt stuck on the starting server outlasted the session: fenced, then active again
        assert one.fences() == ["session lost"]
