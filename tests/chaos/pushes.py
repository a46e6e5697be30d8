"""The push loop of the fault tests: a back end pushing to every key through the web node's admin API.

One worker per key pushes ``{"k": key, "n": n, "e": expire}`` (n counts up per key) one push at a time, as a
back end that waits for each answer would, with a seeded share of online-only pushes (expire 0). Every push is
bounded by ``cluster.DEADLINE``; what came back is recorded, failures included, and nothing is retried (a retry
would be a new push with a new n).
"""
from __future__ import annotations

import asyncio
import random
import time
from collections import Counter
from dataclasses import dataclass, field

from tests.chaos.cluster import ChaosCluster

STORED_EXPIRE = 600


@dataclass(frozen=True, slots=True)
class PushRecord:
    key: str
    n: int
    expire: int
    sent: float     # seconds after the start of the run
    took: float
    ret: int
    mid: int | None


@dataclass
class PushLog:
    records: list[PushRecord] = field(default_factory=list)

    def acked(self, key: str | None = None, stored: bool | None = None) -> list[PushRecord]:
        """Pushes that returned ret 0 (of ``key``; ``stored``: only expire > 0, or only expire 0)."""
        return [r for r in self.records if r.ret == 0 and (key is None or r.key == key)
                and (stored is None or (r.expire > 0) == stored)]

    def by_ret(self) -> Counter[int]:
        return Counter(r.ret for r in self.records)

    def slowest_failure(self) -> float:
        return max((r.took for r in self.records if r.ret != 0), default=0.0)


async def push_loop(cluster: ChaosCluster, keys: list[str], log: PushLog, stop: asyncio.Event, seed: int,
                    started: float, interval: float = 0.1, online_only: float = 0.1) -> None:
    """Push to every key until ``stop`` is set (one worker per key)."""
    await asyncio.gather(*(_worker(cluster, key, log, stop, random.Random(f"{seed}/{key}"), started, interval,
                                   online_only) for key in keys))


async def _worker(cluster: ChaosCluster, key: str, log: PushLog, stop: asyncio.Event, rng: random.Random,
                  started: float, interval: float, online_only: float) -> None:
    n = 0
    while not stop.is_set():
        n += 1
        expire = 0 if rng.random() < online_only else STORED_EXPIRE
        sent = time.monotonic()
        ret, mid = await cluster.push(key, {"k": key, "n": n, "e": expire}, expire)
        log.records.append(PushRecord(key, n, expire, sent - started, time.monotonic() - sent, ret, mid))
        try:
            await asyncio.wait_for(stop.wait(), interval * rng.uniform(0.5, 1.5))
        except TimeoutError:
            pass
