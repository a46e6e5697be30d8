"""Pure delivery logic: duplicates by (gid, mid), the live/fetch merge, backoff bounds and jitter."""
from __future__ import annotations

import random

import pytest

from comet.subscriber_api import Message
from comet.subscriber_logic import Backoff, Cursor, LiveBuffer, ReconnectPolicy, merge_page


def msg(mid: int, gid: int = 0, fetched: bool = False) -> Message:
    return Message("k", mid, gid, b"%d" % mid, mid, fetched)


def test_cursor_drops_duplicates_and_older_mids_per_gid() -> None:
    cursor = Cursor({0: 10})
    accepted = [m.mid for m in (msg(10), msg(11), msg(11), msg(9), msg(12), msg(5, gid=1), msg(5, gid=1))
                if cursor.accept(m)]
    assert accepted == [11, 12, 5]
    assert cursor.positions() == {0: 12, 1: 5} and cursor.get(2) == 0


def test_merge_keeps_mid_order_and_online_only_messages() -> None:
    """Live while fetching: 3 (also fetched), 4 (expire 0: never stored), 5 (also fetched), 6 (after the fetch).
    The fetch returns 1, 2, 3 on one page and 5 on the next."""
    live = LiveBuffer()
    for mid in (3, 4, 5, 6):
        live.add(msg(mid))
    cursor = Cursor({0: 0})
    out = []
    for page in ([msg(1, fetched=True), msg(2, fetched=True), msg(3, fetched=True)], [msg(5, fetched=True)]):
        out.extend(m for m in merge_page(live, page) if cursor.accept(m))
    out.extend(m for m in live.drain() if cursor.accept(m))
    assert [(m.mid, m.fetched) for m in out] == [(1, True), (2, True), (3, True), (4, False), (5, True), (6, False)]
    assert len(live) == 0


def test_merge_leaves_other_gids_for_their_own_fetch() -> None:
    live = LiveBuffer()
    live.add(msg(1, gid=1))
    live.add(msg(2))
    assert [m.mid for m in merge_page(live, [msg(3)])] == [2, 3]
    assert [(m.gid, m.mid) for m in live.drain()] == [(1, 1)]


def test_backoff_grows_to_the_maximum_with_jitter_and_resets() -> None:
    policy = ReconnectPolicy(initial=0.1, maximum=1.0, multiplier=2.0, jitter=0.5)
    backoff = Backoff(policy, random.Random(7))
    delays = [backoff.next_delay() for _ in range(10)]
    bases = [min(1.0, 0.1 * 2 ** n) for n in range(10)]
    assert all(base * 0.5 <= delay <= base for delay, base in zip(delays, bases))
    assert len(set(delays)) == len(delays)          # jittered: no two clients (or attempts) in lockstep
    assert not backoff.exhausted
    backoff.reset()
    assert 0.05 <= backoff.next_delay() <= 0.1
    no_jitter = Backoff(ReconnectPolicy(initial=0.2, maximum=0.5, jitter=0.0))
    assert [no_jitter.next_delay() for _ in range(4)] == [0.2, 0.4, 0.5, 0.5]


def test_backoff_gives_up_after_max_attempts() -> None:
    backoff = Backoff(ReconnectPolicy(max_attempts=2))
    backoff.next_delay()
    assert not backoff.exhausted
    backoff.next_delay()
    assert backoff.exhausted


@pytest.mark.parametrize("options", [dict(initial=0), dict(initial=2, maximum=1), dict(multiplier=0.5),
                                     dict(jitter=1.5), dict(max_attempts=-1)])
def test_policy_limits(options: dict) -> None:
    with pytest.raises(ValueError):
        ReconnectPolicy(**options)
