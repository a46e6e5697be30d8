"""Scenario ``connections``: idle connections one comet process holds, their memory, and the accept rate.

Runs (each with a fresh server): ``mixed`` (TCP and WebSocket alternating), ``tcp``, ``ws`` on a comet, and
``bare-tcp``, ``bare-ws`` on the bare tornado baseline. In each run the load generator opens connections up to
every step of the curve (1,000, 2,000, 5,000, 10,000, 18,000 by default) as fast as its ``concurrency``
in-flight handshakes per worker allow, each subscribing its own key with heartbeat 300; after each step and a
settle pause it reads the server's VmRSS. Memory per connection = (RSS at N - RSS at 0) / N, where RSS at 0 is
read after a warm-up of ``WARMUP`` connections (opened and closed, so first-use allocations are not counted per
connection). Held = connections the client still has open at the end, cross-checked with the comet's
``/stat``. Accept rate = handshakes completed per second while opening (all steps together).
"""
from __future__ import annotations

import argparse
import time
from typing import Any

from benchmarks.common import client_status, comet_stat, open_subscribers
from benchmarks.fleet import Target
from benchmarks.harness import Cluster, CpuMeter, Proc, free_port
from benchmarks.loadgen import WorkerPool
from benchmarks.report import Report, plot_xy

NAME = "connections"
RUNS = ("mixed", "tcp", "ws", "bare-tcp", "bare-ws")
WARMUP = 10
TARGET_HELD = 18_000
TARGET_ACCEPT = 5_000.0
TARGET_KIB = {"tcp": 6.0, "ws": 11.0}
QUICK = {"steps": [500, 1000, 2000], "settle": 1.0}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--steps", type=lambda s: [int(x) for x in s.split(",")],
                        default=[1000, 2000, 5000, 10000, 18000], help="connection counts of the curve")
    parser.add_argument("--runs", type=lambda s: s.split(","), default=list(RUNS), help=",".join(RUNS))
    parser.add_argument("--workers", type=int, default=2, help="load-generator processes")
    parser.add_argument("--concurrency", type=int, default=64, help="in-flight handshakes per worker")
    parser.add_argument("--settle", type=float, default=2.0, help="seconds before reading RSS")


def _targets(run: str, ports: dict[str, int]) -> list[Target]:
    protos = {"mixed": ["tcp", "ws"], "tcp": ["tcp"], "ws": ["ws"], "bare-tcp": ["tcp"], "bare-ws": ["ws"]}[run]
    return [(proto, "127.0.0.1", ports[proto]) for proto in protos]


def _server(cluster: Cluster, run: str) -> tuple[Proc, dict[str, int], int]:
    """The server of a run: the bare baseline, or a comet alone (idle connections need no message node)."""
    if run.startswith("bare"):
        proc, ports = cluster.baseline()
        return proc, ports, 0
    proc, addrs = cluster.comet(free_port())  # default limits: every connection subscribes its own key
    return proc, {"tcp": addrs.tcp, "ws": addrs.ws}, addrs.stat


def one_run(pool: WorkerPool, run: str, args: argparse.Namespace) -> dict[str, Any]:
    points: list[dict[str, Any]] = []
    with Cluster() as cluster:
        proc, ports, stat_port = _server(cluster, run)
        targets = _targets(run, ports)
        open_subscribers(pool, targets, [f"w{run}-{i}" for i in range(WARMUP)], 4, "")
        pool.broadcast({"op": "close"})
        time.sleep(args.settle)
        rss0 = proc.rss_kb()
        clients0 = _clients_rss(pool)
        held, opening_seconds, failed = 0, 0.0, 0
        errors: dict[str, int] = {}
        cpu_server, cpu_clients = [], []
        for step in args.steps:
            keys = [f"{run}-{i}" for i in range(held, step)]
            meter = CpuMeter({"server": proc.pid, **{f"client{i}": pid for i, pid in enumerate(pool.pids())}})
            opened = open_subscribers(pool, targets, keys, args.concurrency, f"{run}: open to {step:,}")
            usage = meter.percent()
            cpu_server.append(usage["server"])
            cpu_clients.append(max(value for name, value in usage.items() if name.startswith("client")))
            opening_seconds += opened["seconds"]
            failed += opened["failed"]
            for text, count in opened["errors"].items():
                errors[text] = errors.get(text, 0) + count
            time.sleep(args.settle)
            status = client_status(pool)
            held = status["open"]
            server_held = -1
            if stat_port:
                conns = comet_stat(stat_port)["connections"]
                server_held = conns["tcp"] + conns["ws"]
            rss = proc.rss_kb()
            points.append({"step": step, "held": held, "server_held": server_held, "rss_kb": rss,
                           "client_kib_per_conn": (_clients_rss(pool) - clients0) / max(1, held),
                           "kib_per_conn": (rss - rss0) / max(1, held), "accept_rate": opened["rate"],
                           "handshake_ms_p50": opened["handshake_ms_p50"],
                           "handshake_ms_p99": opened["handshake_ms_p99"], "handshake_ms_max": opened["handshake_ms_max"]})
        pool.broadcast({"op": "close"}, timeout=60)
    total = sum(len(range(a, b)) for a, b in zip([0] + args.steps[:-1], args.steps))
    return {"run": run, "rss0_kb": rss0, "points": points, "failed": failed, "errors": errors,
            "accept_rate": (total - failed) / max(1e-9, opening_seconds), "cpu_server": cpu_server,
            "cpu_client_max": cpu_clients, "slope_kib": _slope(points)}


def _clients_rss(pool: WorkerPool) -> int:
    """VmRSS of all load-generator processes together, KiB."""
    total = 0
    for pid in pool.pids():
        for line in open(f"/proc/{pid}/status").read().splitlines():
            if line.startswith("VmRSS:"):
                total += int(line.split()[1])
    return total


def _slope(points: list[dict[str, Any]]) -> float:
    """Least-squares KiB per connection over the curve (insensitive to a fixed offset)."""
    xs = [p["held"] for p in points]
    ys = [p["rss_kb"] for p in points]
    if len(xs) < 2:
        return float("nan")
    mx, my = sum(xs) / len(xs), sum(ys) / len(ys)
    den = sum((x - mx) ** 2 for x in xs)
    return sum((x - mx) * (y - my) for x, y in zip(xs, ys)) / den if den else float("nan")


def run(args: argparse.Namespace) -> Report:
    report = Report(NAME, {k: v for k, v in vars(args).items() if k != "func"})
    results: dict[str, dict[str, Any]] = {}
    with WorkerPool(args.workers) as pool:
        report.data["clock_bracket_ns"] = pool.check_clock()
        for name in args.runs:
            results[name] = one_run(pool, name, args)
    report.data["runs"] = results
    top = max(args.steps)
    per_conn = {name: r["points"][-1]["kib_per_conn"] for name, r in results.items()}
    if "mixed" in results:
        last = results["mixed"]["points"][-1]
        report.check("idle connections held, TCP+WS mixed", last["held"], "conns", ">=", min(top, TARGET_HELD))
        report.info("  held according to the comet's /stat", last["server_held"], "conns")
        report.info("memory per idle connection, mixed", per_conn["mixed"], "KiB")
        report.info("  load generator's memory per connection, mixed", last["client_kib_per_conn"], "KiB")
        report.check("accept rate, mixed (subscribe handshakes)", results["mixed"]["accept_rate"], "/s", ">=",
                     TARGET_ACCEPT)
    for proto in ("tcp", "ws"):
        if proto in results:
            report.check(f"memory per idle {proto.upper()} connection", per_conn[proto], "KiB", "<=",
                         TARGET_KIB[proto])
            report.info(f"  {proto.upper()} slope over the curve", results[proto]["slope_kib"], "KiB")
            report.info(f"  accept rate, {proto.upper()} only", results[proto]["accept_rate"], "/s")
        bare = f"bare-{proto}"
        if bare in results:
            report.info(f"bare tornado {proto.upper()}: memory per connection", per_conn[bare], "KiB")
            report.info(f"bare tornado {proto.upper()}: accept rate", results[bare]["accept_rate"], "/s")
            if proto in results:
                report.info(f"  ratio pushcluster/bare, {proto.upper()} memory", per_conn[proto] / per_conn[bare], "x")
                report.info(f"  ratio pushcluster/bare, {proto.upper()} accept rate",
                            results[proto]["accept_rate"] / results[bare]["accept_rate"], "x")
    for name, result in results.items():
        if result["failed"]:
            report.note(f"{name}: {result['failed']} connection(s) failed: {result['errors']}")
        report.info(f"  {name}: CPU while opening, server (max over steps)", max(result["cpu_server"]), "% core")
        report.info(f"  {name}: CPU while opening, busiest client", max(result["cpu_client_max"]), "% core")
    plot_xy(report, "memory", f"Server RSS growth against idle connections (top {top:,})", "connections held",
            "RSS growth, MiB",
            {name: ([p["held"] for p in r["points"]], [(p["rss_kb"] - r["rss0_kb"]) / 1024 for p in r["points"]])
             for name, r in results.items()})
    return report
