"""The checks of the fault tests can fail: the verdict and the subscriber's cursor on made-up histories (no
network), each violation alone."""
from __future__ import annotations

import asyncio
import random
from typing import Any

import pytest

from tests.chaos.pushes import BroadcastRecord, PushLog, PushRecord
from tests.chaos.links import Link, Live
from tests.chaos.subscriber import TCP, Subscriber
from tests.chaos.verdict import judge

KEY = "alice"


def _history() -> tuple[PushLog, dict[str, list[tuple[int, Any]]]]:
    """Four pushes to KEY: n=1..3 stored and acknowledged (mids 10, 20, 30), n=4 failed with 65535."""
    log = PushLog([PushRecord(KEY, 1, 600, 0.0, 0.01, 0, 10), PushRecord(KEY, 2, 600, 0.1, 0.01, 0, 20),
                   PushRecord(KEY, 3, 600, 0.2, 0.01, 0, 30), PushRecord(KEY, 4, 600, 0.3, 0.01, 65535, None)])
    stored: dict[str, list[tuple[int, Any]]] = {KEY: [(10, {"n": 1}), (20, {"n": 2}), (30, {"n": 3})]}
    return log, stored


def _subscriber(accepted: list[int]) -> Subscriber:
    subscriber = Subscriber(KEY, TCP, "", None, random.Random(0))  # type: ignore[arg-type]  # never calls out
    for mid in accepted:
        subscriber._take(Live(mid, 600), live=True)
    return subscriber


def test_a_clean_history_passes() -> None:
    log, stored = _history()
    verdict = judge(log, [_subscriber([10, 20, 30])], stored, [("comet-a1", 0)])
    assert verdict.violations == []
    assert verdict.counts["ok"] == 3 and verdict.counts["failed_ret_65535"] == 1 and verdict.counts["gaps"] == 0


def test_a_skipped_message_is_a_gap() -> None:
    log, stored = _history()
    verdict = judge(log, [_subscriber([10, 30])], stored, [])
    assert verdict.counts["gaps"] == 1
    assert "1 acknowledged push(es) neither received nor fetchable (1 stored but skipped" in verdict.violations[0]


def test_a_lost_message_is_reported() -> None:
    log, stored = _history()
    stored[KEY].pop(1)
    verdict = judge(log, [_subscriber([10, 30])], stored, [])
    assert verdict.counts["lost"] == 1
    assert any("n=2 mid=20 is not stored (lost)" in text for text in verdict.violations)


@pytest.mark.parametrize("ret", [-1, -2, 500])
def test_a_push_without_a_clear_ret_is_reported(ret: int) -> None:
    log, stored = _history()
    log.records.append(PushRecord(KEY, 5, 600, 0.4, 8.0, ret, None))
    verdict = judge(log, [_subscriber([10, 20, 30])], stored, [])
    assert any("without a clear ret" in text for text in verdict.violations)


def test_a_message_stored_twice_and_mids_going_down_are_reported() -> None:
    log, stored = _history()
    stored[KEY].append((40, {"n": 3}))
    log.records[2] = PushRecord(KEY, 3, 600, 0.2, 0.01, 0, 5)
    verdict = judge(log, [_subscriber([10, 20])], stored, [])
    text = "\n".join(verdict.violations)
    assert "stored twice (n = [3])" in text and "do not only go up" in text


def test_a_sigterm_that_does_not_exit_0_is_reported() -> None:
    log, stored = _history()
    verdict = judge(log, [_subscriber([10, 20, 30])], stored, [("message-1", 1)])
    assert verdict.violations == ["SIGTERM did not end in exit code 0: [('message-1', 1)]"]


def test_the_cursor_counts_duplicates_reordering_and_overlaps() -> None:
    subscriber = _subscriber([10, 20])
    subscriber._fetched.add(15)
    subscriber._take(Live(15, 600), live=True)   # fetched before its live copy came: expected
    subscriber._take(Live(12, 0), live=True)     # online-only, read after a newer one: dropped, allowed
    subscriber._take(Live(18, 600), live=True)   # stored, older than the last, never fetched: skipped for good
    tally = subscriber.tally
    assert (tally.overlaps, tally.late_online, tally.out_of_order) == (1, 1, 1)
    assert subscriber.accepted == [10, 20] and subscriber.last == 20
    log, stored = _history()
    assert any("out_of_order = 1" in text for text in judge(log, [subscriber], stored, []).violations)


class _Recorded(Link):
    """A connection that replays made-up frames, then closes."""

    def __init__(self, frames: list[Live]) -> None:
        self.frames = frames

    async def next(self) -> Live | None:
        return self.frames.pop(0) if self.frames else None


async def test_the_reader_counts_a_mid_received_twice_and_one_out_of_order() -> None:
    subscriber = _subscriber([])
    queue: asyncio.Queue[Live | None] = asyncio.Queue()
    await subscriber._read(_Recorded([Live(5, 600), Live(7, 600), Live(6, 600), Live(7, 600)]), queue)
    assert (subscriber.tally.duplicates, subscriber.tally.out_of_order, subscriber.tally.live) == (1, 1, 4)
    assert queue.qsize() == 5   # every frame, then None


def _broadcasts(log: PushLog) -> list[tuple[int, Any]]:
    """Three broadcasts: b=1 (mid 100) clean, b=2 (mid 200) not handed to comet "a" (fc), b=3 failed with 65535;
    the store as it should be."""
    log.broadcasts += [BroadcastRecord(1, 600, 0.0, 0.01, 0, 100, 2, ()),
                       BroadcastRecord(2, 600, 0.1, 0.01, 0, 200, 1, ("a",)),
                       BroadcastRecord(3, 600, 0.2, 0.01, 65535, None, 0, ())]
    return [(100, {"b": 1}), (200, {"b": 2})]


def _public(live: list[int], final: list[int]) -> Subscriber:
    subscriber = _subscriber([10, 20, 30])
    for mid in live:
        subscriber.pub.take(mid, live=True)
    subscriber.pub.final_from = len(subscriber.pub.accepted)
    for mid in final:
        subscriber.pub.take(mid, live=False)
    return subscriber


def test_a_broadcast_left_out_by_fc_may_come_with_the_final_catch_up_only() -> None:
    log, stored = _history()
    stored_public = _broadcasts(log)
    verdict = judge(log, [_public([100], [200])], stored, [], stored_public, {KEY: "a"})
    assert verdict.violations == []
    assert (verdict.counts["broadcasts_fc"], verdict.counts["broadcasts_failed_ret_65535"]) == (1, 1)
    assert (verdict.counts["paccepted_live"], verdict.counts["pfinal"]) == (1, 1)


def test_a_broadcast_its_comet_got_must_arrive_before_the_final_catch_up() -> None:
    log, stored = _history()
    stored_public = _broadcasts(log)
    verdict = judge(log, [_public([100], [200])], stored, [], stored_public, {KEY: "b"})
    assert verdict.counts["pgaps"] == 1 and verdict.counts["pgaps_final"] == 0
    assert "1 acknowledged broadcast(s) not naming comet 'b' in fc" in verdict.violations[0]


def test_a_broadcast_missing_after_the_final_catch_up_or_not_stored_is_reported() -> None:
    log, stored = _history()
    stored_public = _broadcasts(log)[:1]
    verdict = judge(log, [_public([100], [])], stored, [], stored_public, {KEY: "a"})
    assert verdict.counts["pgaps_final"] == 1 and verdict.counts["plost"] == 1
    assert any("b=2" in text or "n=2 mid=200 is not stored" in text for text in verdict.violations)


async def test_public_mids_twice_or_out_of_order_on_a_connection_are_reported() -> None:
    subscriber = _subscriber([])
    queue: asyncio.Queue[Live | None] = asyncio.Queue()
    await subscriber._read(_Recorded([Live(200, 600, 1), Live(100, 600, 1), Live(200, 600, 1)]), queue)
    assert (subscriber.pub.tally.out_of_order, subscriber.pub.tally.duplicates) == (1, 1)
    log, stored = _history()
    text = "\n".join(judge(log, [subscriber], stored, [], _broadcasts(log), {KEY: "a"}).violations)
    assert "public duplicates = 1" in text and "public out_of_order = 1" in text


@pytest.mark.parametrize("comet, allowed", [("a", True), ("b", False)])
async def test_only_a_broadcast_retried_at_its_comet_may_come_after_a_newer_one(comet: str, allowed: bool) -> None:
    log, stored = _history()
    stored_public = _broadcasts(log) + [(300, {"b": 4})]     # mid 200 named comet "a" in fc: retried there
    log.broadcasts.append(BroadcastRecord(4, 600, 0.3, 0.01, 0, 300, 2, ()))
    subscriber = _subscriber([])
    queue: asyncio.Queue[Live | None] = asyncio.Queue()
    await subscriber._read(_Recorded([Live(100, 600, 1), Live(300, 600, 1), Live(200, 600, 1)]), queue)
    for mid in (100, 300, 200):
        subscriber.pub.take(mid, live=True)
    verdict = judge(log, [subscriber], stored, [], stored_public, {KEY: comet})
    public_order = [text for text in verdict.violations if "public out_of_order" in text]
    assert verdict.counts["pretried_late"] == (1 if allowed else 0)
    assert (public_order == []) == allowed


def test_a_broadcast_without_an_answer_is_reported() -> None:
    log, stored = _history()
    stored_public = _broadcasts(log)
    log.broadcasts.append(BroadcastRecord(4, 600, 0.3, 8.0, -1, None, 0, ()))
    verdict = judge(log, [_public([100, 200], [])], stored, [], stored_public, {KEY: "a"})
    assert len(verdict.violations) == 1 and "without ret 65535" in verdict.violations[0]
