"""The chaos run: real clients and a push loop against a local cluster while a seeded schedule kills and restarts
comets (active and standby), message nodes and Redis; then the invariants of issue 5 are checked for every
subscriber and a summary is printed.

The cluster (tests/chaos/cluster.py): a real ZooKeeper, one redis-server with ``appendonly yes`` and
``appendfsync always`` (so a SIGKILL loses nothing acknowledged), two message nodes, comet name ``a`` as an
active and a standby process, comet name ``b`` as one process, and a web node in the test's loop. Keys are
chosen so that each name serves three; each key has a TCP and a WebSocket subscriber
(tests/chaos/subscriber.py) that reconnects through ``/1/server/get`` and fetches from its last mid after every
reconnect. Faults (tests/chaos/faults.py) come every 2-4 s, each kind once first.

Broadcasts are under the same faults: about one push in ten is a ``POST /push/all?expire=600`` (at most
``BROADCASTS``), and every subscriber takes public messages too, fetching them with ``p=`` after each reconnect
and, at the end, from ``p=0`` (tests/chaos/public.py, the broadcast invariants in tests/chaos/verdict.py).

Duration: ``PUSHCLUSTER_CHAOS_SECONDS`` (default 40) of faults, plus start-up and a drain of at most ~30 s.
Seed: ``PUSHCLUSTER_CHAOS_SEED`` (default a fixed one); the schedule is a function of the seed and the duration,
the interleaving with the processes is not (they are real), so a failure prints the seed and the faults as they
happened.
"""
from __future__ import annotations

import asyncio
import os
import random
import time
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

from tests.chaos.cluster import ChaosCluster, keys_for, start_cluster
from tests.chaos.faults import KINDS, Done, Fault, plan, run_schedule
from tests.chaos.public import stored_public as fetch_public
from tests.chaos.pushes import PushLog, push_loop
from tests.chaos.subscriber import TCP, WS, Subscriber
from tests.chaos.verdict import judge, summary
from tests.conftest import RedisServer
from tests.processes import tracebacks

SECONDS = float(os.environ.get("PUSHCLUSTER_CHAOS_SECONDS", "40"))
SEED = int(os.environ.get("PUSHCLUSTER_CHAOS_SEED", "20261123"))
KEYS_PER_NAME = 3
DRAIN = 25.0       # seconds the subscribers get to receive or fetch the last pushes once the faults are over
CALM = 3.0         # seconds of pushes without faults at the end
BROADCASTS = 600   # at most this many broadcasts per run (below the cluster's max_public, none is trimmed, and
                   # the SDK's PublicWindow of 1024 mids that the subscribers use)

pytestmark = [pytest.mark.chaos, pytest.mark.zookeeper, pytest.mark.redis, pytest.mark.integration,
              pytest.mark.timeout(SECONDS + 150)]


@pytest.mark.parametrize("seed", [SEED, 1, 2, 3])
def test_the_plan_covers_every_fault_kind_and_depends_only_on_the_seed(seed: int) -> None:
    faults = plan(seed, 40.0)
    assert faults == plan(seed, 40.0)
    assert {fault.kind for fault in faults} == set(KINDS), f"seed {seed}: {faults}"
    assert all(b.at > a.at for a, b in zip(faults, faults[1:])) and faults[-1].at < 40.0 - 3.0
    assert plan(seed + 1, 40.0) != faults


@pytest.fixture
async def cluster(aof_redis: RedisServer, zk_hosts: str, tmp_path: Path) -> Any:
    cluster = ChaosCluster(aof_redis, zk_hosts, tmp_path)
    try:
        yield cluster
    finally:
        await cluster.close()


async def test_chaos(cluster: ChaosCluster, record_property: Any) -> None:
    names = keys_for(["a", "b"], KEYS_PER_NAME)
    keys = names["a"] + names["b"]
    comet_of = {key: name for name, served in names.items() for key in served}
    await start_cluster(cluster, {"a": 2, "b": 1}, keys)
    rng = random.Random(SEED)
    subscribers = [Subscriber(key, transport, cluster.public, cluster.http, random.Random(rng.random()),
                              broadcasts=True) for key in keys for transport in (TCP, WS)]
    faults = plan(SEED, SECONDS)
    done: list[Done] = []
    skipped: list[Fault] = []
    pushes = PushLog()
    stop_pushes, stop_subscribers = asyncio.Event(), asyncio.Event()
    started = time.monotonic()
    clients = [asyncio.create_task(s.run(stop_subscribers)) for s in subscribers]
    loop = asyncio.create_task(push_loop(cluster, keys, pushes, stop_pushes, SEED, started, broadcasts=BROADCASTS))
    try:
        await run_schedule(cluster, faults, SECONDS, started, done, skipped)
        await asyncio.sleep(max(CALM, SECONDS - (time.monotonic() - started)))
        stop_pushes.set()
        await loop
        drained = await _drain(subscribers, pushes, comet_of)
    finally:
        stop_pushes.set()
        stop_subscribers.set()
        await asyncio.gather(loop, *clients, return_exceptions=True)
    for subscriber in subscribers:
        await subscriber.final_fetch()
    stored = {key: await cluster.stored(key) for key in keys}
    stored_public = await fetch_public(cluster, keys[0])

    verdict = judge(pushes, subscribers, stored, cluster.term_exits, stored_public, comet_of)
    header = [f"seed={SEED} duration={SECONDS:.0f}s keys={len(keys)} subscribers={len(subscribers)} "
              f"(TCP and WebSocket on every key), drain took {drained:.1f}s",
              f"faults: {len(done)} done, {len(skipped)} skipped "
              f"({', '.join(f'{k} x{sum(1 for d in done if d.fault.kind == k)}' for k in KINDS)})",
              *(f"  {d.line()}; failed pushes until the next fault: {_failures(pushes, d, done)}" for d in done),
              "failed pushes by fault: " + "; ".join(_by_fault(pushes, done)),
              f"push latency of failed pushes: at most {pushes.slowest_failure():.2f}s",
              "broadcasts failed or with fc by fault: " + "; ".join(_broadcasts_by_fault(pushes, done))]
    report = summary("chaos run", verdict, header)
    print("\n" + report)
    for name, value in verdict.counts.items():
        record_property(name, value)
    record_property("faults", len(done))
    assert not verdict.violations, f"seed {SEED}:\n{report}"
    assert {d.fault.kind for d in done} == set(KINDS) or SECONDS < 30, f"seed {SEED}: not every fault ran\n{report}"
    logs = tracebacks(cluster.processes())
    assert not logs, f"seed {SEED}: tracebacks in {sorted(logs)}:\n" + "\n".join(
        _traceback_excerpt(text) for text in logs.values())


def _window(record: Done, done: list[Done]) -> tuple[float, float]:
    """From a fault's stop to the next fault's stop (or the end of the run)."""
    later = [d.stopped_at for d in done if d.stopped_at > record.stopped_at]
    return record.stopped_at, min(later, default=float("inf"))


def _failures(pushes: PushLog, record: Done, done: list[Done]) -> str:
    start, end = _window(record, done)
    rets = Counter(r.ret for r in pushes.records if r.ret != 0 and start <= r.sent < end)
    return ", ".join(f"{ret} x{count}" for ret, count in sorted(rets.items())) or "none"


def _by_fault(pushes: PushLog, done: list[Done]) -> list[str]:
    """Failed pushes summed by kind and signal of the fault whose window they fell in."""
    total: dict[tuple[str, str], Counter[int]] = {}
    runs: Counter[tuple[str, str]] = Counter()
    for record in done:
        start, end = _window(record, done)
        kind = (record.fault.kind, record.fault.how)
        runs[kind] += 1
        total.setdefault(kind, Counter()).update(r.ret for r in pushes.records if r.ret != 0 and start <= r.sent < end)
    return [f"{kind}/SIG{how} x{runs[(kind, how)]}: " + (", ".join(
        f"{ret} x{count}" for ret, count in sorted(total[(kind, how)].items())) or "none")
        for kind, how in sorted(total)]


def _broadcasts_by_fault(pushes: PushLog, done: list[Done]) -> list[str]:
    """Broadcasts that failed (ret) or left a comet out (fc) in each fault's window; "none" when there were none."""
    lines = []
    for record in done:
        start, end = _window(record, done)
        hit = Counter(f"ret {b.ret}" if b.ret else f"fc {','.join(b.fc)}" for b in pushes.broadcasts
                      if (b.ret or b.fc) and start <= b.sent < end)
        if hit:
            lines.append(f"t={record.stopped_at:.2f}s {record.fault.kind}/SIG{record.fault.how}: "
                         + ", ".join(f"{what} x{count}" for what, count in sorted(hit.items())))
    early = Counter(f"ret {b.ret}" if b.ret else f"fc {','.join(b.fc)}" for b in pushes.broadcasts
                    if (b.ret or b.fc) and b.sent < min((d.stopped_at for d in done), default=float("inf")))
    if early:
        lines.append("before the first fault: " + ", ".join(f"{w} x{c}" for w, c in sorted(early.items())))
    return lines or ["none"]


async def _drain(subscribers: list[Subscriber], pushes: PushLog, comet_of: dict[str, str]) -> float:
    """Wait until every subscriber is live and has accepted its key's last stored push and the broadcasts its
    comet took part in; the seconds it took."""
    last: dict[str, int] = {}
    for record in pushes.acked(stored=True):
        last[record.key] = max(last.get(record.key, 0), record.mid or 0)
    started = time.monotonic()
    for subscriber in subscribers:
        wanted = last.get(subscriber.key, 0)
        pwanted = [b.mid for b in pushes.broadcasts_for(comet_of[subscriber.key]) if b.mid is not None]
        remaining = DRAIN - (time.monotonic() - started)
        if not await subscriber.wait_for(wanted, max(remaining, 0.1), pwanted):
            break   # the verdict names who is behind
    return time.monotonic() - started


def _traceback_excerpt(log: str) -> str:
    at = log.index("Traceback (most recent call last)")
    return log[max(0, at - 300):at + 1500]
