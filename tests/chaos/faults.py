"""The fault schedule of a chaos run: planned from a seed, then carried out one fault at a time.

:func:`plan` is pure: the same seed and duration give the same list. Every kind of fault comes once first (in a
seeded order, so that a short run still covers them all), then random ones, until the duration is used up:

=====================  ===========================================================================================
``comet-active``       the active comet of name ``a`` (its standby takes over after the ZooKeeper session timeout)
``comet-standby``      a standby comet of name ``a`` (nothing should notice)
``comet-b``            the only comet of name ``b`` (its keys get ret 65535, then 1001, until it is back)
``message``            one of the two message nodes (calls go to the other one)
``redis``              the redis-server every message node uses (pushes and fetches get 65535 until it is back)
=====================  ===========================================================================================

Each is stopped with SIGKILL or SIGTERM (from the seed), left down for a while, and started again with the same
config and data (Redis reloads its AOF). What really happened, with times, is recorded in :class:`Done`.
"""
from __future__ import annotations

import asyncio
import random
import time
from dataclasses import dataclass

from tests.chaos.cluster import ChaosCluster

KINDS = ("comet-active", "comet-standby", "comet-b", "message", "redis")


@dataclass(frozen=True)
class Fault:
    at: float          # seconds after the start of the run, at the earliest
    kind: str          # one of KINDS
    how: str           # "KILL" or "TERM"
    down_for: float    # seconds between the stop and the restart
    pick: int          # which of several candidates (message node)


@dataclass
class Done:
    """A fault as it happened: seconds after the start of the run."""

    fault: Fault
    target: str
    stopped_at: float
    restarted_at: float
    ready_after: float   # seconds from the restart until the process served again

    def line(self) -> str:
        return (f"t={self.stopped_at:6.2f}s SIG{self.fault.how:<4} {self.fault.kind:<13} {self.target:<12} down {self.fault.down_for:.2f}s, "
                f"restarted t={self.restarted_at:6.2f}s, serving {self.ready_after:.2f}s later")


def plan(seed: int, duration: float) -> list[Fault]:
    """The faults of a run of ``duration`` seconds (see the module docstring)."""
    rng = random.Random(seed)
    kinds = list(KINDS)
    rng.shuffle(kinds)
    faults: list[Fault] = []
    at = rng.uniform(1.5, 3.0)
    while at < duration - 3.0:
        kind = kinds[len(faults)] if len(faults) < len(kinds) else rng.choice(KINDS)
        faults.append(Fault(at=round(at, 2), kind=kind, how=rng.choice(("KILL", "TERM")),
                            down_for=round(rng.uniform(0.3, 2.0), 2), pick=rng.randrange(2)))
        at += rng.uniform(2.0, 4.0)
    return faults


async def inflict(cluster: ChaosCluster, fault: Fault, started: float) -> Done | None:
    """Stop the fault's target, wait ``down_for``, start it again and wait until it serves; None when there was
    no such target at that moment (e.g. no standby registered yet)."""
    if fault.kind == "redis":
        target = "redis"
        stopped_at = time.monotonic()
        await cluster.stop_redis(fault.how)
        await asyncio.sleep(fault.down_for)
        restarted_at = time.monotonic()
        ready = await cluster.restart_redis()
    elif fault.kind == "message":
        message = list(cluster.messages.values())[fault.pick % len(cluster.messages)]
        target = message.label
        stopped_at = time.monotonic()
        await cluster.stop_process(message.process, fault.how)
        await asyncio.sleep(fault.down_for)
        restarted_at = time.monotonic()
        ready = await cluster.restart_message(message)
    else:
        name, role = {"comet-active": ("a", "active"), "comet-standby": ("a", "standby"),
                      "comet-b": ("b", "active")}[fault.kind]
        comet = await cluster.comet_with_role(name, role)
        if comet is None:
            return None
        target = comet.label
        stopped_at = time.monotonic()
        await cluster.stop_process(comet.process, fault.how)
        await asyncio.sleep(fault.down_for)
        restarted_at = time.monotonic()
        ready = await cluster.restart_comet(comet)
    return Done(fault, target, stopped_at - started, restarted_at - started, ready)


async def run_schedule(cluster: ChaosCluster, faults: list[Fault], duration: float, started: float,
                       done: list[Done], skipped: list[Fault]) -> None:
    """Carry out ``faults`` in order, each at its time or as soon as the previous one is over; a fault that
    cannot start before ``duration`` is skipped."""
    for fault in faults:
        wait = started + fault.at - time.monotonic()
        if wait > 0:
            await asyncio.sleep(wait)
        if time.monotonic() - started > duration:
            skipped.append(fault)
            continue
        record = await inflict(cluster, fault, started)
        if record is None:
            skipped.append(fault)
        else:
            done.append(record)
