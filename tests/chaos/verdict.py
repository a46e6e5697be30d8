"""The invariants of a fault run, checked on what the push loop, the subscribers and the store recorded, and the
summary printed at the end of the run.

Invariants (issue 5):

* a push that failed got a clear ret (65535 or 1001), never a hang or a broken reply;
* the mids a key's acknowledged pushes got only go up (in the order the key's pushes were made);
* the store holds each push at most once, under strictly increasing mids, and every acknowledged push with
  expire > 0 under the mid it was acknowledged with (nothing half-written, nothing lost);
* every subscriber received or fetched every acknowledged push with expire > 0 of its key (no gap), received
  nothing twice and nothing out of order (``tests/chaos/subscriber.py`` says exactly what counts);
* a node stopped with SIGTERM exited with 0.

Broadcasts (when the run sent some; ``stored_public`` is what the message nodes hold at the end):

* a broadcast that failed got ret 65535 (its save failed), never a hang or a broken reply; acknowledged public
  mids only go up (one sender, one web node);
* the store holds each broadcast at most once, under strictly increasing public mids, and every acknowledged one
  (ret 0, expire 600) under its mid;
* before the final catch-up, every subscriber received or fetched every acknowledged broadcast whose ``fc`` does not
  name its key's comet (a comet named in ``fc`` did not get it: its clients have it after their next catch-up);
  after the final catch-up (every public message from ``p=0``), every acknowledged broadcast, ``fc`` or not;
* no public mid twice, none out of order on a connection, none trimmed, none that is neither acknowledged nor
  stored (tests/chaos/public.py says exactly what counts).
"""
from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Any, Mapping, Sequence

from tests.chaos.pushes import PushLog
from tests.chaos.subscriber import Subscriber

CLEAR_FAILURES = (65535, 1001)
SHOWN = 5   # examples per violation


@dataclass
class Verdict:
    violations: list[str] = field(default_factory=list)
    counts: dict[str, int] = field(default_factory=dict)

    def fail(self, text: str) -> None:
        self.violations.append(text)


def judge(pushes: PushLog, subscribers: Sequence[Subscriber], stored: dict[str, list[tuple[int, Any]]],
          term_exits: Sequence[tuple[str, int | None]], stored_public: list[tuple[int, Any]] | None = None,
          comet_of: Mapping[str, str] | None = None) -> Verdict:
    """``comet_of``: the comet name serving each key (for the broadcasts' ``fc``)."""
    verdict = Verdict()
    _check_pushes(pushes, verdict)
    _check_store(pushes, stored, verdict)
    for subscriber in subscribers:
        _check_subscriber(pushes, subscriber, stored.get(subscriber.key, []), verdict)
    bad_exits = [(name, code) for name, code in term_exits if code != 0]
    if bad_exits:
        verdict.fail(f"SIGTERM did not end in exit code 0: {bad_exits}")
    tallies = [s.tally for s in subscribers]
    by_ret = pushes.by_ret()
    verdict.counts.update({
        "pushes": len(pushes.records), "ok": by_ret[0], "ok_stored": len(pushes.acked(stored=True)),
        "ok_online_only": len(pushes.acked(stored=False)),
        "failed": len(pushes.records) - by_ret[0],
        **{f"failed_ret_{ret}": count for ret, count in sorted(by_ret.items()) if ret != 0},
        "sessions": sum(t.sessions for t in tallies), "deliveries": sum(t.live for t in tallies),
        "accepted_live": sum(t.accepted_live for t in tallies),
        "fetched": sum(t.accepted_fetched for t in tallies), "overlaps": sum(t.overlaps for t in tallies),
        "late_online": sum(t.late_online for t in tallies), "duplicates": sum(t.duplicates for t in tallies),
        "out_of_order": sum(t.out_of_order for t in tallies), "trimmed": sum(t.trimmed for t in tallies),
        "gaps": verdict.counts.get("gaps", 0), "lost": verdict.counts.get("lost", 0),
        "stored": sum(len(v) for v in stored.values()),
        "failed_but_stored": verdict.counts.get("failed_but_stored", 0),
    })
    if pushes.broadcasts or stored_public:
        _check_broadcasts(pushes, stored_public or [], verdict)
        for subscriber in subscribers:
            _check_public(pushes, subscriber, (comet_of or {}).get(subscriber.key, ""), stored_public or [], verdict)
        _count_public(pushes, subscribers, stored_public or [], verdict)
    return verdict


def _check_broadcasts(pushes: PushLog, stored_public: list[tuple[int, Any]], verdict: Verdict) -> None:
    unclear = [b for b in pushes.broadcasts if b.ret not in (0, 65535)]
    if unclear:
        verdict.fail(f"{len(unclear)} broadcast(s) failed without ret 65535 (-1 = no answer within the deadline, "
                     f"-2 = no envelope): {unclear[:SHOWN]}")
    mids = [b.mid for b in pushes.saved_broadcasts() if b.mid is not None]
    if any(b <= a for a, b in zip(mids, mids[1:])):
        verdict.fail("acknowledged public mids do not only go up: "
                     f"{[(a, b) for a, b in zip(mids, mids[1:]) if b <= a][:SHOWN]}")
    stored_mids = [mid for mid, _msg in stored_public]
    if any(b <= a for a, b in zip(stored_mids, stored_mids[1:])):
        verdict.fail("stored public mids are not strictly increasing")
    numbers = Counter(msg.get("b") if isinstance(msg, dict) else None for _mid, msg in stored_public)
    twice = [n for n, count in numbers.items() if count > 1]
    if twice:
        verdict.fail(f"broadcast(s) stored twice (n = {twice[:SHOWN]})")
    by_mid = {mid: msg for mid, msg in stored_public}
    lost = 0
    for record in pushes.saved_broadcasts():
        msg = by_mid.get(record.mid or 0)
        if msg is None:
            lost += 1
            verdict.fail(f"acknowledged broadcast n={record.n} mid={record.mid} is not stored (lost)")
        elif msg.get("b") != record.n:
            verdict.fail(f"public mid {record.mid} holds b={msg.get('b')}, acknowledged for b={record.n}")
    failed = {b.n for b in pushes.broadcasts if b.ret != 0}
    verdict.counts["plost"] = lost
    verdict.counts["pfailed_but_stored"] = sum(1 for n in numbers if n in failed)


def _check_public(pushes: PushLog, subscriber: Subscriber, comet: str, stored_public: list[tuple[int, Any]],
                  verdict: Verdict) -> None:
    pub, name = subscriber.pub, subscriber.name
    before, accepted = pub.before_final(), set(pub.accepted)
    missing = [(b.n, b.mid) for b in pushes.broadcasts_for(comet) if b.mid not in before]
    if missing:
        verdict.counts["pgaps"] = verdict.counts.get("pgaps", 0) + len(missing)
        verdict.fail(f"{name}: {len(missing)} acknowledged broadcast(s) not naming comet {comet!r} in fc neither "
                     f"received nor fetched before the final catch-up (n, mid): {missing[:SHOWN]}")
    missing = [(b.n, b.mid) for b in pushes.saved_broadcasts() if b.mid not in accepted]
    if missing:
        verdict.counts["pgaps_final"] = verdict.counts.get("pgaps_final", 0) + len(missing)
        verdict.fail(f"{name}: {len(missing)} acknowledged broadcast(s) missing after the final catch-up "
                     f"(n, mid): {missing[:SHOWN]}")
    if len(accepted) != len(pub.accepted):
        verdict.fail(f"{name}: a public mid accepted twice")
    known = {mid for mid, _msg in stored_public} | {b.mid for b in pushes.saved_broadcasts()}
    unknown = sorted(accepted - known)
    if unknown:
        verdict.fail(f"{name}: public mid(s) neither acknowledged nor stored: {unknown[:SHOWN]}")
    retried = {b.mid for b in pushes.saved_broadcasts() if comet in b.fc}   # retried at this comet, maybe late
    late = [mid for mid in pub.tally.out_of_order_mids if mid in retried]
    verdict.counts["pretried_late"] = verdict.counts.get("pretried_late", 0) + len(late)
    if pub.tally.out_of_order > len(late):
        verdict.fail(f"{name}: public out_of_order = {pub.tally.out_of_order - len(late)} (not retried broadcasts): "
                     f"{subscriber.tally.anomalies[:SHOWN]}")
    for what in ("duplicates", "trimmed"):
        if getattr(pub.tally, what):
            verdict.fail(f"{name}: public {what} = {getattr(pub.tally, what)}: {subscriber.tally.anomalies[:SHOWN]}")


def _count_public(pushes: PushLog, subscribers: Sequence[Subscriber], stored_public: list[tuple[int, Any]],
                  verdict: Verdict) -> None:
    tallies = [s.pub.tally for s in subscribers]
    by_ret = Counter(b.ret for b in pushes.broadcasts)
    verdict.counts.update({
        "broadcasts": len(pushes.broadcasts), "broadcasts_ok": by_ret[0],
        "broadcasts_failed": len(pushes.broadcasts) - by_ret[0],
        **{f"broadcasts_failed_ret_{ret}": count for ret, count in sorted(by_ret.items()) if ret != 0},
        "broadcasts_fc": len(pushes.saved_broadcasts(clean=False)),
        "broadcast_online": sum(b.online for b in pushes.broadcasts),
        "pdeliveries": sum(t.live for t in tallies), "paccepted_live": sum(t.accepted_live for t in tallies),
        "pfetched": sum(t.accepted_fetched for t in tallies), "pfinal": sum(t.accepted_final for t in tallies),
        "prepeats": sum(t.repeats for t in tallies), "plate": sum(t.late for t in tallies),
        "pduplicates": sum(t.duplicates for t in tallies),
        "pout_of_order": sum(t.out_of_order for t in tallies) - verdict.counts.get("pretried_late", 0),
        "pretried_late": verdict.counts.get("pretried_late", 0),
        "ptrimmed": sum(t.trimmed for t in tallies), "pgaps": verdict.counts.get("pgaps", 0),
        "pgaps_final": verdict.counts.get("pgaps_final", 0), "pstored": len(stored_public),
    })


def _check_pushes(pushes: PushLog, verdict: Verdict) -> None:
    unclear = [r for r in pushes.records if r.ret != 0 and r.ret not in CLEAR_FAILURES]
    if unclear:
        verdict.fail(f"{len(unclear)} push(es) failed without a clear ret (-1 = no answer within the deadline, "
                     f"-2 = no envelope): {unclear[:SHOWN]}")
    for key in sorted({r.key for r in pushes.records}):
        mids = [r.mid for r in sorted(pushes.acked(key), key=lambda r: r.n) if r.mid is not None]
        if any(b <= a for a, b in zip(mids, mids[1:])):
            verdict.fail(f"key {key}: acknowledged mids do not only go up: "
                         f"{[(a, b) for a, b in zip(mids, mids[1:]) if b <= a][:SHOWN]}")


def _check_store(pushes: PushLog, stored: dict[str, list[tuple[int, Any]]], verdict: Verdict) -> None:
    lost = failed_but_stored = 0
    for key, messages in stored.items():
        mids = [mid for mid, _msg in messages]
        if any(b <= a for a, b in zip(mids, mids[1:])):
            verdict.fail(f"key {key}: stored mids are not strictly increasing")
        numbers = Counter(msg.get("n") if isinstance(msg, dict) else None for _mid, msg in messages)
        twice = [n for n, count in numbers.items() if count > 1]
        if twice:
            verdict.fail(f"key {key}: push(es) stored twice (n = {twice[:SHOWN]})")
        by_mid = {mid: msg for mid, msg in messages}
        records = {r.n: r for r in pushes.records if r.key == key}
        for record in pushes.acked(key, stored=True):
            msg = by_mid.get(record.mid or 0)
            if msg is None:
                lost += 1
                verdict.fail(f"key {key}: acknowledged push n={record.n} mid={record.mid} is not stored (lost)")
            elif msg.get("n") != record.n:
                verdict.fail(f"key {key}: mid {record.mid} holds n={msg.get('n')}, acknowledged for n={record.n}")
        failed_but_stored += sum(1 for n in numbers if n in records and records[n].ret != 0)
    verdict.counts["lost"] = lost
    verdict.counts["failed_but_stored"] = failed_but_stored


def _check_subscriber(pushes: PushLog, subscriber: Subscriber, stored: list[tuple[int, Any]],
                      verdict: Verdict) -> None:
    tally, name = subscriber.tally, subscriber.name
    accepted = set(subscriber.accepted)
    stored_mids = {mid for mid, _msg in stored}
    missing = [r for r in pushes.acked(subscriber.key, stored=True) if r.mid not in accepted]
    if missing:
        verdict.counts["gaps"] = verdict.counts.get("gaps", 0) + len(missing)
        skipped = [(r.n, r.mid) for r in missing if r.mid in stored_mids]
        verdict.fail(f"{name}: {len(missing)} acknowledged push(es) neither received nor fetchable "
                     f"({len(skipped)} stored but skipped by the client's cursor, e.g. {skipped[:SHOWN]}; "
                     f"last accepted mid {subscriber.last})")
    if subscriber.accepted != sorted(accepted):
        verdict.fail(f"{name}: accepted mids are not strictly increasing")
    for what in ("duplicates", "out_of_order", "trimmed", "errors"):
        if getattr(tally, what):
            verdict.fail(f"{name}: {what} = {getattr(tally, what)}: {tally.anomalies[:SHOWN]}")


def summary(title: str, verdict: Verdict, extra: Sequence[str] = ()) -> str:
    counts = verdict.counts
    lines = [f"== {title} ==", *extra,
             "pushes: {pushes} (ok {ok}: {ok_stored} stored + {ok_online_only} online-only; failed {failed}: {fr})"
             .format(fr=", ".join(f"ret {k[11:]} x{v}" for k, v in counts.items() if k.startswith("failed_ret_"))
                     or "none", **counts),
             "subscribers: {sessions} sessions, {deliveries} deliveries ({accepted_live} accepted live), "
             "{fetched} fetched, {overlaps} overlaps (live copy of a fetched one), {late_online} late online-only"
             .format(**counts),
             "invariants: duplicates={duplicates} out_of_order={out_of_order} gaps={gaps} trimmed={trimmed} "
             "lost={lost}; stored {stored} messages, {failed_but_stored} of them from failed pushes"
             .format(**counts)]
    if "broadcasts" in counts:
        lines += [
            "broadcasts: {broadcasts} sent (ok {broadcasts_ok}, {broadcasts_fc} of them with a non-empty fc; failed "
            "{broadcasts_failed}: {fr}); {broadcast_online} connections online at the comets"
            .format(fr=", ".join(f"ret {k[22:]} x{v}" for k, v in counts.items()
                                 if k.startswith("broadcasts_failed_ret_")) or "none", **counts),
            "public: {pdeliveries} deliveries ({paccepted_live} accepted live), {pfetched} fetched by catch-ups, "
            "{pfinal} by the final catch-up, {prepeats} repeats dropped by (gid, mid), {plate} late"
            .format(**counts),
            "public invariants: duplicates={pduplicates} out_of_order={pout_of_order} (retried late, allowed: "
            "{pretried_late}) gaps={pgaps} (after the final "
            "catch-up {pgaps_final}) trimmed={ptrimmed} lost={plost}; stored {pstored} public messages, "
            "{pfailed_but_stored} of them from failed broadcasts".format(**counts)]
    if verdict.violations:
        lines.append(f"VIOLATIONS ({len(verdict.violations)}):")
        lines.extend(f"  - {text}" for text in verdict.violations[:20])
    return "\n".join(lines)
