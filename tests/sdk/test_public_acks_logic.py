"""Pure SDK logic for public messages and acks: the late-mid window, where a public catch-up starts, which mids
are acknowledged and when, the pmsgs of a fetch reply, the server SDK's typed results and argument checks."""
from __future__ import annotations

import json
from typing import Any

import pytest

from comet.subscriber_acks import Acker
from comet.subscriber_api import BadParameterError, Message, ServerError, parse_fetch
from comet.subscriber_public import LATE_WINDOW, PublicWindow
from web.push_client import _check_expr, _wait_query
from web.push_results import (
    AliasChange, BroadcastResult, KeyInfo, MessageTrace, MultiPushResult, PushResult, TagKeysPage, TagPushResult,
)
from web.ret import RawJSON, Ret, render


def msg(mid: int, gid: int = 0, fetched: bool = False) -> Message:
    return Message("k", mid, gid, b"%d" % mid, mid, fetched)


def test_public_window_accepts_late_unseen_mids_and_drops_seen_ones() -> None:
    window = PublicWindow(floor=100)
    accepted = [mid for mid in (100, 50, 300, 200, 300, 250, 200, 301) if window.accept(mid)]
    assert accepted == [300, 200, 250, 301]          # 200 and 250 arrived late: still taken, once
    assert window.newest == 301 and window.floor == 100 and len(window) == 4
    assert not window.is_new(250) and window.is_new(260) and not window.is_new(99)


def test_public_window_forgets_the_oldest_and_raises_the_floor() -> None:
    window = PublicWindow(size=3)
    for mid in (10, 30, 20, 40):
        assert window.accept(mid)
    assert window.floor == 10 and len(window) == 3   # 10 left the window: it and below can no longer be told apart
    assert not window.accept(10) and not window.accept(5) and window.accept(15)
    assert window.floor == 30 and not window.accept(25)   # 30 left next


def test_public_catch_up_starts_ten_seconds_below_the_newest_never_below_the_floor() -> None:
    window = PublicWindow(floor=7)
    assert window.fetch_from() == 7
    window.accept(7 + 3 * LATE_WINDOW)
    assert window.fetch_from() == 7 + 2 * LATE_WINDOW
    window.accept(8)
    assert window.fetch_from() == 7 + 2 * LATE_WINDOW
    with pytest.raises(ValueError):
        PublicWindow(floor=-1)


class Writer:
    """The session's side of an Acker: woken for each queued ack, takes batches."""

    def __init__(self, acker: Acker) -> None:
        self.acker, self.wakes = acker, 0

    def wake(self) -> None:
        self.wakes += 1

    def written(self) -> list[int]:
        out: list[int] = []
        while batch := self.acker.next_batch():
            out.extend(batch)
        return out


def test_acker_acks_what_the_connection_carried_once_taken() -> None:
    acker = Acker()
    writer = Writer(acker)
    acker.taken(msg(1, fetched=True))       # no connection yet: nothing
    acker.attach(writer.wake)
    acker.taken(msg(2, fetched=True))       # fetched, stored before the subscribe: the comet would not take it
    acker.carried(msg(3))                   # live, not taken yet: no ack yet
    assert writer.written() == [] and writer.wakes == 0
    acker.taken(msg(3))
    assert writer.written() == [3] and writer.wakes == 1
    acker.taken(msg(4, fetched=True))       # fetched first, its live copy came after: acked when it arrives
    acker.carried(msg(4))
    acker.carried(msg(5))                   # live, never taken (dropped for mid order): never acked
    acker.carried(msg(6, gid=1))            # public: never acked
    acker.taken(msg(6, gid=1))
    assert writer.written() == [4] and acker.sent == 2
    acker.carried(msg(7))
    acker.carried(msg(8))
    acker.taken(msg(8))
    acker.detach()                          # the queued ack of 8 was for that connection: dropped
    acker.taken(msg(7))                     # its connection is gone: the next one cannot ack it
    acker.attach(writer.wake)
    acker.taken(msg(7))
    assert writer.written() == [] and acker.sent == 2


def test_acker_disabled_bounded_and_batched() -> None:
    off = Acker(enabled=False)
    writer = Writer(off)
    off.attach(writer.wake)
    off.carried(msg(1))
    off.taken(msg(1))
    assert writer.written() == [] and writer.wakes == 0
    small = Acker(memory=2, max_queued=3)
    small.attach(Writer(small).wake)
    for mid in (1, 2, 3):
        small.carried(msg(mid))
    for mid in (1, 2, 3):
        small.taken(msg(mid))
    assert list(small.queue) == [2, 3]      # 1 was forgotten: at most `memory` mids are remembered
    for mid in range(10, 13):
        small.carried(msg(mid))
        small.taken(msg(mid))
    assert list(small.queue) == [10, 11, 12] and small.dropped == 2    # at most max_queued wait
    assert small.next_batch(2) == [10, 11] and small.next_batch(2) == [12] and small.next_batch() == []


def test_fetch_reply_with_public_messages() -> None:
    items = [{"msg": RawJSON('{"p":1}'), "mid": 9, "gid": 1}, {"msg": RawJSON("[2]"), "mid": 8}]
    body, _ = render(Ret.OK, {"msgs": [{"msg": RawJSON("3"), "mid": 5, "gid": 0}], "pmsgs": items,
                              "ptrimmed": True})
    page = parse_fetch("k", 200, body)
    assert page.messages == [Message("k", 5, 0, b"3", 3, True)] and not page.trimmed and page.ptrimmed
    assert page.public == [Message("k", 9, 1, b'{"p":1}', {"p": 1}, True), Message("k", 8, 1, b"[2]", [2], True)]
    empty = parse_fetch("k", 200, render(Ret.OK)[0])
    assert (empty.public, empty.ptrimmed) == ([], False)


def test_typed_results_read_the_reply_data() -> None:
    assert PushResult.from_data({"mid": 5, "online": 1}) == PushResult(5, 1)
    waited = PushResult.from_data({"mid": 5, "online": 1, "outcome": "acked", "key": "k"})
    assert waited == PushResult(5, 1, "acked", "k")
    assert MultiPushResult.from_data({"fk": ["b"], "outcomes": {"a": "offline"}}).outcomes == {"a": "offline"}
    assert TagPushResult.from_data({"keys": 3, "online": 2, "fk": []}) == TagPushResult(3, 2, [], {})
    assert BroadcastResult.from_data({"mid": 9, "online": 4, "fc": ["n2"]}).failed_comets == ["n2"]
    assert AliasChange.from_data({"key": "k", "alias": None, "moved_from": None, "replaced": "old"}).replaced == "old"
    assert KeyInfo.from_data({"key": "k", "tags": ["a"], "alias": "x"}) == KeyInfo("k", ["a"], "x")
    assert TagKeysPage.from_data({"keys": ["a"], "next": None}) == TagKeysPage(["a"], None)
    trace = MessageTrace.from_data({"key": "k", "mid": 3, "events": [{"kind": "acked"}],
                                    "verdict": {"state": "acked", "text": "Acknowledged."}})
    assert (trace.state, trace.events) == ("acked", [{"kind": "acked"}])
    bad: list[tuple[Any, dict[str, Any]]] = [
        (PushResult, {"mid": "5", "online": 1}), (BroadcastResult, {"mid": 1, "online": 1, "fc": [1]}),
        (KeyInfo, {"key": "k", "tags": ["a"], "alias": 3}), (MessageTrace, {"key": "k", "mid": 3, "events": []}),
        (MultiPushResult, {"fk": [], "outcomes": []})]
    for cls, data in bad:
        with pytest.raises(ServerError):
            cls.from_data(data)


def test_wait_and_expression_checks_before_any_request() -> None:
    assert _wait_query(None, None) == {}
    assert _wait_query("acked", 2.5) == {"wait": "acked", "timeout": "2.5"}
    assert _wait_query("written", None) == {"wait": "written"}
    assert _wait_query("acked", 3) == {"wait": "acked", "timeout": "3"}
    for wait, timeout in ((None, 1.0), ("read", None), ("acked", 0), ("acked", True), ("acked", -1)):
        with pytest.raises(BadParameterError) as caught:
            _wait_query(wait, timeout)
        assert caught.value.status == 0
    assert _check_expr((("a", "b"), ["c"])) == [["a", "b"], ["c"]]
    bad_exprs: list[Any] = [[], "a", [[]], [["a", 1]], [[""]], [["a"]] * 17, [["a"] * 9], [json.dumps(["a"])]]
    for expr in bad_exprs:
        with pytest.raises(BadParameterError):
            _check_expr(expr)
