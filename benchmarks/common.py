"""Steps shared by the scenarios: open subscribers across the pool, run HTTP load, gather what was received."""
from __future__ import annotations

import json
import time
import urllib.request
from typing import Any

from benchmarks.fleet import Target
from benchmarks.loadgen import WorkerPool, split, take_sources
from benchmarks.report import percentile

SOURCES_PER_WORKER = 4
HEARTBEAT = 300  # seconds: subscribers heartbeat every 0.8 x this (runs are shorter, but clients stay correct)


def comet_stat(port: int) -> dict[str, Any]:
    """The comet's ``GET /stat`` counters."""
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/stat", timeout=10) as reply:
        stat: dict[str, Any] = json.loads(reply.read())
        return stat


def open_subscribers(pool: WorkerPool, targets: list[Target], keys: list[str], concurrency: int,
                     desc: str, timeout: float = 120.0) -> dict[str, Any]:
    """Open one subscriber per key (spread over the workers, connection i on ``targets[i % len]``).

    Returns opened/failed counts, the first errors, and ``rate``: handshakes completed per second from the
    first connect to the last ``+h`` (all workers on the one CLOCK_MONOTONIC).
    """
    parts = split(keys, pool.size)
    commands: list[dict[str, Any] | None] = []
    for index, part in enumerate(parts):
        offset = sum(len(p) for p in parts[:index])  # keep the protocol alternation global
        shifted = targets[offset % len(targets):] + targets[:offset % len(targets)]
        commands.append({"op": "connect", "targets": shifted, "keys": part,
                         "sources": take_sources(SOURCES_PER_WORKER), "heartbeat": HEARTBEAT,
                         "concurrency": concurrency, "timeout": timeout} if part else None)
    results = pool.call(commands, timeout + 30, total=len(keys), desc=desc)
    opened = sum(r["opened"] for r in results)
    start = min(r["start_ns"] for r in results)
    last = max(r["last_ok_ns"] for r in results)
    errors: dict[str, int] = {}
    for r in results:
        for text, count in r["errors"].items():
            errors[text] = errors.get(text, 0) + count
    handshakes = [ns for r in results for ns in r["handshake_ns"]]
    pool.broadcast({"op": "heartbeats", "period": HEARTBEAT * 0.8})
    return {"opened": opened, "failed": sum(r["failed"] for r in results), "errors": errors,
            "seconds": (last - start) / 1e9, "rate": opened / max(1e-9, (last - start) / 1e9),
            "handshake_ms_p50": percentile(handshakes, 50) / 1e6, "handshake_ms_p99": percentile(handshakes, 99) / 1e6,
            "handshake_ms_max": max(handshakes, default=0) / 1e6,
            "client_cpu_max": max(r["cpu_percent"] for r in results)}


def client_status(pool: WorkerPool) -> dict[str, int]:
    results = pool.broadcast({"op": "status"})
    return {name: sum(r[name] for r in results) for name in ("open", "lost", "refused")}


def collect(pool: WorkerPool, reset: bool = True) -> dict[str, Any]:
    """Merge what every worker's subscribers received: count, first/last receive time, latency samples."""
    results = pool.broadcast({"op": "collect", "reset": reset})
    firsts = [r["first_ns"] for r in results if r["first_ns"]]
    return {"count": sum(r["count"] for r in results), "first_ns": min(firsts) if firsts else 0,
            "last_ns": max(r["last_ns"] for r in results), "samples": [s for r in results for s in r["samples"]],
            "lost": sum(r["lost"] for r in results)}


def wait_received(pool: WorkerPool, expected: int, timeout: float) -> dict[str, Any]:
    """Poll (without resetting) until the subscribers got ``expected`` messages or ``timeout`` passed."""
    deadline = time.monotonic() + timeout
    while True:
        counts = sum(r["count"] for r in pool.broadcast({"op": "collect", "reset": False, "samples": False}))
        if counts >= expected or time.monotonic() >= deadline:
            return collect(pool)
        time.sleep(0.05)


def http_load(pool: WorkerPool, host: str, port: int, spec: dict[str, Any], conns: int, warmup: float,
              duration: float, rate: float = 0.0, desc: str = "", client: str = "raw") -> dict[str, Any]:
    """Closed-loop (``rate`` 0) or open-loop HTTP load from every worker; merged counts and samples.

    ``conns`` and ``rate`` are totals, divided over the workers; every worker cycles through all of ``spec``'s
    keys, starting at a different place, so concurrent requests rarely hit the same key.
    """
    per_conns = max(1, conns // pool.size)
    keys = len(spec.get("keys") or [""])
    commands: list[dict[str, Any] | None] = [
        {"op": "http", "host": host, "port": port, "spec": {**spec, "offset": index * keys // pool.size},
         "conns": per_conns, "rate": rate / pool.size, "warmup": warmup, "duration": duration, "client": client}
        for index in range(pool.size)]
    results = pool.call(commands, warmup + duration + 60, desc=desc, seconds=warmup + duration)
    merged: dict[str, Any] = {name: sum(r[name] for r in results)
                              for name in ("done", "keys_ok", "errors", "unfinished", "replies_ok")}
    merged["latency_ns"] = [s for r in results for s in r["latency_ns"]]
    merged["lag_ns"] = [s for r in results for s in r["lag_ns"]]
    merged["rate"] = merged["done"] / duration
    merged["keys_rate"] = merged["keys_ok"] / duration
    merged["client_cpu"] = [round(100 * r["cpu_seconds"] / duration, 1) for r in results]
    merged["client_us_per_request"] = 1e6 * sum(r["cpu_seconds"] for r in results) / max(1, merged["done"])
    return merged
