"""The push loop of the fault tests: a back end pushing to every key through the web node's admin API.

One worker per key pushes ``{"k": key, "n": n, "e": expire}`` (n counts up per key) one push at a time, as a
back end that waits for each answer would, with a seeded share of online-only pushes (expire 0). Every push is
bounded by ``cluster.DEADLINE``; what came back is recorded, failures included, and nothing is retried (a retry
would be a new push with a new n).

With ``broadcasts`` > 0 a back end also broadcasts: one more worker sends ``POST /push/all?expire=600`` with
``{"b": n, "e": 600}`` (n counts up), one broadcast after every 5-15 pushes (seeded: about 1 push in 10 is a
broadcast), one at a time, at most ``broadcasts`` of them; each answer (ret, mid, online, fc) is recorded.
"""
from __future__ import annotations

import asyncio
import json
import random
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import httpx

from tests.chaos.cluster import BROKEN, DEADLINE, HANG, ChaosCluster

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


@dataclass(frozen=True, slots=True)
class BroadcastRecord:
    n: int
    expire: int
    sent: float     # seconds after the start of the run
    took: float
    ret: int
    mid: int | None
    online: int
    fc: tuple[str, ...]   # the comet names the web node could not hand it to


@dataclass
class PushLog:
    records: list[PushRecord] = field(default_factory=list)
    broadcasts: list[BroadcastRecord] = field(default_factory=list)

    def saved_broadcasts(self, clean: bool | None = None) -> list[BroadcastRecord]:
        """Broadcasts answered ret 0 (their save succeeded); ``clean``: only those with an empty fc (True) or only
        those with a non-empty one (False)."""
        return [b for b in self.broadcasts if b.ret == 0 and (clean is None or (not b.fc) == clean)]

    def broadcasts_for(self, name: str) -> list[BroadcastRecord]:
        """Saved broadcasts every client of comet name ``name`` must have received or fetched by its catch-ups:
        those whose fc does not name ``name``."""
        return [b for b in self.saved_broadcasts() if name not in b.fc]

    def acked(self, key: str | None = None, stored: bool | None = None) -> list[PushRecord]:
        """Pushes that returned ret 0 (of ``key``; ``stored``: only expire > 0, or only expire 0)."""
        return [r for r in self.records if r.ret == 0 and (key is None or r.key == key)
                and (stored is None or (r.expire > 0) == stored)]

    def by_ret(self) -> Counter[int]:
        return Counter(r.ret for r in self.records)

    def slowest_failure(self) -> float:
        return max((r.took for r in self.records if r.ret != 0), default=0.0)


async def push_loop(cluster: ChaosCluster, keys: list[str], log: PushLog, stop: asyncio.Event, seed: int,
                    started: float, interval: float = 0.1, online_only: float = 0.1, broadcasts: int = 0) -> None:
    """Push to every key until ``stop`` is set (one worker per key); and up to ``broadcasts`` broadcasts."""
    workers = [_worker(cluster, key, log, stop, random.Random(f"{seed}/{key}"), started, interval, online_only)
               for key in keys]
    if broadcasts > 0:
        workers.append(_broadcaster(cluster, log, stop, random.Random(f"{seed}/all"), started, broadcasts))
    await asyncio.gather(*workers)


async def _broadcaster(cluster: ChaosCluster, log: PushLog, stop: asyncio.Event, rng: random.Random,
                       started: float, most: int) -> None:
    """One broadcast after every 5-15 pushes (of all keys), until ``stop`` or ``most`` broadcasts."""
    due = rng.randint(5, 15)
    for n in range(1, most + 1):
        while len(log.records) < due:
            try:
                await asyncio.wait_for(stop.wait(), 0.05)
                return
            except TimeoutError:
                pass
        if stop.is_set():
            return
        sent = time.monotonic()
        ret, mid, online, fc = await push_all(cluster, {"b": n, "e": STORED_EXPIRE}, STORED_EXPIRE)
        log.broadcasts.append(BroadcastRecord(n, STORED_EXPIRE, sent - started, time.monotonic() - sent, ret, mid,
                                              online, tuple(fc)))
        due = len(log.records) + rng.randint(5, 15)


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


async def push_all(cluster: ChaosCluster, body: Any, expire: int) -> tuple[int, int | None, int, list[str]]:
    """POST /push/all: (ret, mid, online, fc); ret HANG / BROKEN as for ``ChaosCluster.push``."""
    try:
        reply = await asyncio.wait_for(cluster.http.post(
            f"{cluster.admin}/push/all", params={"expire": expire}, content=json.dumps(body)), DEADLINE)
        doc = reply.json()
    except TimeoutError:
        return HANG, None, 0, []
    except (httpx.HTTPError, ValueError):
        return BROKEN, None, 0, []
    ret = int(doc.get("ret", BROKEN))
    if ret != 0:
        return ret, None, 0, []
    data = doc["data"]
    return ret, int(data["mid"]), int(data["online"]), [str(name) for name in data["fc"]]

