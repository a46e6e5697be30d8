"""Scenario ``push``: private push end to end, admin HTTP -> web -> comet -> message -> Redis -> subscriber.

Web, comet and message run as separate processes with Redis. ``--keys`` keys each have one subscriber (TCP and
WebSocket alternating); every push goes to one of them (``POST /push/private?key=K&expire=600``), its body
``{"t":<monotonic ns>,"s":N}``, and the subscriber that receives it notes the push-to-receive time.

(a) sustained: ``--pushers`` keep-alive connections push back to back (closed loop) for ``--duration`` s after a
warm-up; the figure is replies with ret 0 per second, checked against the messages the subscribers got.
(b) fixed load: pushes paced at ``--rate``/s (open loop: each request carries its scheduled time, so a server
that falls behind is charged for it); p50/p99 push-to-receive. Then the same at each ``--curve`` rate:
achieved throughput against offered load, and at ``--sequential-rate`` (pushes too far apart to overlap, the
way Nchan's published 0.15 ms / 2.1 ms was measured). The bare baseline (``POST /push`` of benchmarks.baseline) does (a),
(b) and the curve with the same clients. To show the web's share, (a) runs a second time with the same pushes
sent as ``CometRPC.PushPrivate`` calls straight to the comet (one RPC connection per load-generator process,
as a web process has one).
"""
from __future__ import annotations

import argparse
import time
from typing import Any

from benchmarks.common import http_load, open_subscribers, wait_received
from benchmarks.harness import Cluster, CpuMeter, Proc
from benchmarks.loadgen import WorkerPool
from benchmarks.report import Report, latency_summary, plot_cdf, plot_xy

NAME = "push"
TARGET_SUSTAINED = 3_000.0
TARGET_P50_MS = 3.0
TARGET_P99_MS = 15.0
QUICK = {"keys": 200, "duration": 2.0, "warmup": 0.5, "curve": [500, 1000, 2000], "curve_duration": 1.5}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--keys", type=int, default=1000, help="subscribed keys (one subscriber each)")
    parser.add_argument("--pushers", type=int, default=64, help="concurrent HTTP connections")
    parser.add_argument("--duration", type=float, default=10.0, help="measured seconds of (a) and (b)")
    parser.add_argument("--warmup", type=float, default=2.0, help="seconds before measuring")
    parser.add_argument("--rate", type=float, default=1000.0, help="offered pushes/s of (b)")
    parser.add_argument("--curve", type=lambda s: [float(x) for x in s.split(",")],
                        default=[500.0, 1000.0, 2000.0, 3000.0, 4000.0], help="offered loads of the curve")
    parser.add_argument("--curve-duration", type=float, default=5.0, help="measured seconds per curve point")
    parser.add_argument("--sequential-rate", type=float, default=100.0,
                        help="a slow paced run where pushes do not overlap (compare: Nchan's sequential figure)")
    parser.add_argument("--workers", type=int, default=2, help="load-generator processes")
    parser.add_argument("--no-baseline", dest="baseline", action="store_false", help="skip the bare tornado run")


def paced(pool: WorkerPool, port: int, spec: dict[str, Any], rate: float, warmup: float, duration: float,
          conns: int) -> dict[str, Any]:
    """One open-loop run at ``rate``; adds what the subscribers received and their latency samples."""
    pool.broadcast({"op": "reset", "since_ns": time.monotonic_ns() + int(warmup * 1e9)})
    result = http_load(pool, "127.0.0.1", port, spec, conns, warmup, duration, rate=rate,
                       desc=f"push at {rate:,.0f}/s")
    got = wait_received(pool, result["replies_ok"], timeout=15.0)
    result.update(received=got["count"], samples=got["samples"], lag=latency_summary(result.pop("lag_ns")),
                  push_latency=latency_summary(got["samples"]), http_latency=latency_summary(result.pop("latency_ns")))
    return result


def closed(pool: WorkerPool, port: int, spec: dict[str, Any], procs: list[Proc], args: argparse.Namespace,
           client: str = "raw") -> dict[str, Any]:
    """Pushes back to back from ``--pushers`` connections (``client`` "rpc": CometRPC calls, no web)."""
    pool.broadcast({"op": "reset", "since_ns": time.monotonic_ns() + int(args.warmup * 1e9)})
    meter = CpuMeter({p.name: p.pid for p in procs})
    result = http_load(pool, "127.0.0.1", port, spec, args.pushers, args.warmup, args.duration,
                       desc=f"push, closed loop{' via CometRPC' if client == 'rpc' else ''}", client=client)
    result["cpu"] = meter.percent()
    got = wait_received(pool, result["replies_ok"], timeout=15.0)
    result.update(received=got["count"], push_latency=latency_summary(got["samples"]),
                  http_latency=latency_summary(result.pop("latency_ns")))
    del result["lag_ns"]
    return result


def drive(pool: WorkerPool, port: int, path: str, keys: list[str], procs: list[Proc],
          args: argparse.Namespace, rpc_port: int = 0) -> dict[str, Any]:
    """(a), (b) and the curve against one server; ``path`` is its push URL template. With ``rpc_port``, (a)
    again straight to the comet's CometRPC (no web)."""
    spec = {"method": "POST", "path": path, "body": "stamp", "keys": keys, "expire": 600}
    sustained = closed(pool, port, spec, procs, args)
    direct = closed(pool, rpc_port, spec, procs[1:], args, client="rpc") if rpc_port else None
    fixed = paced(pool, port, spec, args.rate, args.warmup, args.duration, args.pushers)
    sequential = paced(pool, port, spec, args.sequential_rate, 1.0, args.curve_duration, args.pushers)
    del sequential["samples"]
    curve = [paced(pool, port, spec, rate, 1.0, args.curve_duration, args.pushers) for rate in args.curve]
    for point, rate in zip(curve, args.curve):
        point["offered"] = rate
        del point["samples"]
    return {"sustained": sustained, "fixed": fixed, "sequential": sequential, "curve": curve, "direct": direct}


def run_system(pool: WorkerPool, args: argparse.Namespace, bare: bool) -> dict[str, Any]:
    keys = [f"push-{i}" for i in range(args.keys)]
    with Cluster() as cluster:
        if bare:
            proc, ports = cluster.baseline()
            procs, http_port, path = [proc], ports["http"], "/push?key={key}"
        else:
            procs, http_port, addrs = cluster.stack()
            path = "/push/private?key={key}&expire={expire}"
            ports = {"tcp": addrs.tcp, "ws": addrs.ws, "rpc": addrs.rpc}
        targets = [("tcp", "127.0.0.1", ports["tcp"]), ("ws", "127.0.0.1", ports["ws"])]
        opened = open_subscribers(pool, targets, keys, 32, "push: subscribe")
        if opened["opened"] < len(keys):
            raise RuntimeError(f"only {opened['opened']} of {len(keys)} subscribed: {opened['errors']}")
        result = drive(pool, http_port, path, keys, procs, args, ports.get("rpc", 0))
        pool.broadcast({"op": "close"}, timeout=60)
    return result


def report_system(report: Report, label: str, result: dict[str, Any], args: argparse.Namespace) -> None:
    sustained, fixed = result["sustained"], result["fixed"]
    judged = label == "pushcluster"
    title = f"{label}: " if not judged else ""
    if judged:
        report.check(f"private push sustained, {args.pushers} pushers", sustained["rate"], "pushes/s", ">=",
                     TARGET_SUSTAINED)
    else:
        report.info(f"{title}push sustained", sustained["rate"], "pushes/s")
    delivered = 100.0 * sustained["received"] / max(1, sustained["replies_ok"])
    report.check(f"  {title}messages received / pushes acknowledged", delivered, "%", ">=", 100.0)
    report.check(f"  {title}failed pushes (ret != 0 or HTTP error)", sustained["errors"], "", "<=", 0)
    report.info(f"  {title}push-to-receive p50 at max load", sustained["push_latency"]["p50"], "ms")
    report.info(f"  {title}push-to-receive p99 at max load", sustained["push_latency"]["p99"], "ms")
    for name, percent in sustained["cpu"].items():
        report.info(f"  {title}CPU {name} at max load", percent, "% core")
    report.info(f"  {title}busiest load-generator process at max load", max(sustained["client_cpu"]), "% core")
    direct = result.get("direct")
    if direct:
        report.info(f"  same pushes via CometRPC, no web ({args.pushers} concurrent calls)", direct["rate"],
                    "pushes/s")
        for name, percent in direct["cpu"].items():
            report.info(f"    CPU {name}", percent, "% core")
        report.info("    push-to-receive p50", direct["push_latency"]["p50"], "ms")
        report.check("    messages received / pushes acknowledged",
                     100.0 * direct["received"] / max(1, direct["replies_ok"]), "%", ">=", 100.0)
    latency = fixed["push_latency"]
    if judged:
        report.check(f"push-to-receive p50 at {args.rate:,.0f} pushes/s", latency["p50"], "ms", "<=", TARGET_P50_MS)
        report.check(f"push-to-receive p99 at {args.rate:,.0f} pushes/s", latency["p99"], "ms", "<=", TARGET_P99_MS)
    else:
        report.info(f"{title}push-to-receive p50 at {args.rate:,.0f}/s", latency["p50"], "ms")
        report.info(f"{title}push-to-receive p99 at {args.rate:,.0f}/s", latency["p99"], "ms")
    report.info(f"  {title}achieved rate at {args.rate:,.0f}/s offered", fixed["rate"], "pushes/s")
    sequential = result["sequential"]["push_latency"]
    report.info(f"  {title}one push at a time ({args.sequential_rate:,.0f}/s): push-to-receive p50", sequential["p50"],
                "ms")
    report.info(f"  {title}one push at a time ({args.sequential_rate:,.0f}/s): push-to-receive p99", sequential["p99"],
                "ms")
    report.info(f"  {title}client send lag p99 (scheduler behind)", fixed["lag"]["p99"], "ms")
    for point in result["curve"]:
        offered = f"{point['offered']:,.0f}/s offered"
        report.info(f"  {title}curve {offered}: achieved", point["rate"], "pushes/s")
        report.info(f"  {title}curve {offered}: push-to-receive p99", point["push_latency"]["p99"], "ms")


def run(args: argparse.Namespace) -> Report:
    report = Report(NAME, {k: v for k, v in vars(args).items() if k != "func"})
    results: dict[str, dict[str, Any]] = {}
    with WorkerPool(args.workers) as pool:
        report.data["clock_bracket_ns"] = pool.check_clock()
        results["pushcluster"] = run_system(pool, args, bare=False)
        if args.baseline:
            results["bare tornado"] = run_system(pool, args, bare=True)
    for label, result in results.items():
        report_system(report, label, result, args)
    if "bare tornado" in results:
        ours, bare = results["pushcluster"], results["bare tornado"]
        report.info("ratio pushcluster/bare, sustained pushes/s", ours["sustained"]["rate"] / bare["sustained"]["rate"],
                    "x")
        report.info(f"ratio pushcluster/bare, p50 at {args.rate:,.0f}/s",
                    ours["fixed"]["push_latency"]["p50"] / bare["fixed"]["push_latency"]["p50"], "x")
    plot_cdf(report, "latency", f"Push to receive at {args.rate:,.0f} pushes/s (open loop)",
             {label: r["fixed"]["samples"] for label, r in results.items()})
    plot_xy(report, "throughput", "Private push: achieved against offered load", "offered pushes/s",
            "achieved pushes/s", {label: ([p["offered"] for p in r["curve"]], [p["rate"] for p in r["curve"]])
                                  for label, r in results.items()}, diagonal=True)
    for result in results.values():
        del result["fixed"]["samples"]
    report.data["results"] = results
    return report
