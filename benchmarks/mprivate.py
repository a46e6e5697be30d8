"""Scenario ``mprivate``: ``POST /push/mprivate`` with ``--group`` keys per request, stored and delivered.

Web, comet, message and Redis as in ``push``; ``--keys`` keys each have one subscriber (TCP and WebSocket
alternating). ``--conns`` keep-alive connections send mprivate requests back to back, each naming the next
``--group`` keys (workers start at different places, so concurrent requests rarely share a key). Keys per
second = keys acknowledged (not in ``fk``) per second of the measured window; every acknowledged key must also
reach its subscriber (messages received / keys acknowledged over the whole run). The bare baseline's
``POST /mpush`` parses the same document and writes to the same subscribers, with no storage and no RPC.
"""
from __future__ import annotations

import argparse
import time
from typing import Any

from benchmarks.common import http_load, open_subscribers, wait_received
from benchmarks.harness import Cluster, CpuMeter
from benchmarks.loadgen import WorkerPool
from benchmarks.report import Report, latency_summary, plot_cdf

NAME = "mprivate"
TARGET_KEYS = 30_000.0
QUICK = {"keys": 500, "duration": 2.0, "warmup": 0.5}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--keys", type=int, default=2000, help="subscribed keys (one subscriber each)")
    parser.add_argument("--group", type=int, default=100, help="keys per request")
    parser.add_argument("--conns", type=int, default=8, help="concurrent HTTP connections")
    parser.add_argument("--duration", type=float, default=8.0, help="measured seconds")
    parser.add_argument("--warmup", type=float, default=2.0, help="seconds before measuring")
    parser.add_argument("--workers", type=int, default=2, help="load-generator processes")
    parser.add_argument("--no-baseline", dest="baseline", action="store_false", help="skip the bare tornado run")


def run_system(pool: WorkerPool, args: argparse.Namespace, bare: bool) -> dict[str, Any]:
    keys = [f"mp-{i}" for i in range(args.keys)]
    with Cluster() as cluster:
        if bare:
            proc, ports = cluster.baseline()
            procs, http_port, path = [proc], ports["http"], "/mpush"
        else:
            procs, http_port, addrs = cluster.stack()
            path = "/push/mprivate?expire={expire}"
            ports = {"tcp": addrs.tcp, "ws": addrs.ws}
        targets = [("tcp", "127.0.0.1", ports["tcp"]), ("ws", "127.0.0.1", ports["ws"])]
        opened = open_subscribers(pool, targets, keys, 32, "mprivate: subscribe")
        if opened["opened"] < len(keys):
            raise RuntimeError(f"only {opened['opened']} of {len(keys)} subscribed: {opened['errors']}")
        spec = {"method": "POST", "path": path, "body": "multi", "keys": keys, "group": args.group, "expire": 600}
        pool.broadcast({"op": "reset", "since_ns": time.monotonic_ns() + int(args.warmup * 1e9)})
        meter = CpuMeter({p.name: p.pid for p in procs})
        result = http_load(pool, "127.0.0.1", http_port, spec, args.conns, args.warmup, args.duration,
                           desc="mprivate" + (" (bare)" if bare else ""))
        result["cpu"] = meter.percent()
        got = wait_received(pool, result["replies_ok"], timeout=20.0)
        result.update(received=got["count"], samples=got["samples"], push_latency=latency_summary(got["samples"]),
                      http_latency=latency_summary(result.pop("latency_ns")))
        del result["lag_ns"]
        pool.broadcast({"op": "close"}, timeout=60)
    return result


def run(args: argparse.Namespace) -> Report:
    report = Report(NAME, {k: v for k, v in vars(args).items() if k != "func"})
    results: dict[str, dict[str, Any]] = {}
    with WorkerPool(args.workers) as pool:
        report.data["clock_bracket_ns"] = pool.check_clock()
        results["pushcluster"] = run_system(pool, args, bare=False)
        if args.baseline:
            results["bare tornado"] = run_system(pool, args, bare=True)
    for label, result in results.items():
        title = "" if label == "pushcluster" else f"{label}: "
        if title:
            report.info(f"{title}multi-key push", result["keys_rate"], "keys/s")
        else:
            report.check(f"mprivate, {args.group} keys per request, {args.conns} connections", result["keys_rate"],
                         "keys/s", ">=", TARGET_KEYS)
        report.info(f"  {title}requests", result["rate"], "requests/s")
        report.check(f"  {title}messages received / keys acknowledged",
                     100.0 * result["received"] / max(1, result["replies_ok"]), "%", ">=", 100.0)
        report.check(f"  {title}failed requests (ret != 0, fk not empty, HTTP error)", result["errors"], "", "<=", 0)
        report.info(f"  {title}request latency p50", result["http_latency"]["p50"], "ms")
        report.info(f"  {title}push-to-receive p99", result["push_latency"]["p99"], "ms")
        for name, percent in result["cpu"].items():
            report.info(f"  {title}CPU {name}", percent, "% core")
        report.info(f"  {title}busiest load-generator process", max(result["client_cpu"]), "% core")
    if "bare tornado" in results:
        report.info("ratio pushcluster/bare, keys/s",
                    results["pushcluster"]["keys_rate"] / results["bare tornado"]["keys_rate"], "x")
    plot_cdf(report, "latency", f"mprivate ({args.group} keys per request): push to receive, closed loop",
             {label: r.pop("samples") for label, r in results.items()})
    report.data["results"] = results
    return report
