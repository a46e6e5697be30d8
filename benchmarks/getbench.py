"""The shared part of ``serverget`` and ``msgget``: closed-loop GETs against one web process and the baseline.

The bare baseline answers ``GET /fixed?n=BYTES`` with a JSON envelope as long as pushcluster's reply, so the
ratio compares the same bytes on the wire.
"""
from __future__ import annotations

import argparse
import json
import urllib.request
from typing import Any

from benchmarks.common import http_load
from benchmarks.harness import Cluster, CpuMeter, Proc
from benchmarks.loadgen import WorkerPool
from benchmarks.report import Report, latency_summary, plot_cdf


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--keys", type=int, default=1000, help="distinct keys asked for, round-robin")
    parser.add_argument("--conns", type=int, default=32, help="concurrent keep-alive connections")
    parser.add_argument("--duration", type=float, default=8.0, help="measured seconds")
    parser.add_argument("--warmup", type=float, default=1.0, help="seconds before measuring")
    parser.add_argument("--workers", type=int, default=2, help="load-generator processes")
    parser.add_argument("--no-baseline", dest="baseline", action="store_false", help="skip the bare tornado run")


QUICK = {"duration": 2.0, "warmup": 0.5}


def fetch(port: int, path: str) -> dict[str, Any]:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=10) as reply:
        doc: dict[str, Any] = json.loads(reply.read())
        return doc


def reply_size(port: int, path: str) -> int:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=10) as reply:
        return len(reply.read())


def load(pool: WorkerPool, port: int, path: str, keys: list[str], procs: list[Proc], args: argparse.Namespace,
         desc: str, client: str = "raw") -> dict[str, Any]:
    spec = {"method": "GET", "path": path, "keys": keys}
    meter = CpuMeter({p.name: p.pid for p in procs})
    result = http_load(pool, "127.0.0.1", port, spec, args.conns, args.warmup, args.duration, desc=desc,
                       client=client)
    result["cpu"] = meter.percent()
    result["samples"] = result.pop("latency_ns")
    result["latency"] = latency_summary(result["samples"])
    del result["lag_ns"]
    return result


def baseline(pool: WorkerPool, size: int, args: argparse.Namespace, desc: str,
             with_httpx: bool = False) -> dict[str, Any]:
    """The bare handler with the raw client; with ``with_httpx``, also driven by httpx (under ``"httpx"``)."""
    path, keys = f"/fixed?n={size}&k={{key}}", [str(i) for i in range(args.keys)]
    with Cluster() as cluster:
        proc, ports = cluster.baseline()
        result = load(pool, ports["http"], path, keys, [proc], args, desc)
        if with_httpx:
            result["httpx"] = load(pool, ports["http"], path, keys, [proc], args, desc + " via httpx", "httpx")
            del result["httpx"]["samples"]
        return result


def report_rows(report: Report, what: str, ours: dict[str, Any], bare: dict[str, Any] | None, target: float,
                args: argparse.Namespace) -> None:
    report.check(f"{what}, {args.conns} connections", ours["rate"], "requests/s", ">=", target)
    report.check("  failed requests (ret != 0 or HTTP error)", ours["errors"], "", "<=", 0)
    report.info("  latency p50", ours["latency"]["p50"], "ms")
    report.info("  latency p99", ours["latency"]["p99"], "ms")
    for name, percent in ours["cpu"].items():
        report.info(f"  CPU {name}", percent, "% core")
    report.info("  busiest load-generator process", max(ours["client_cpu"]), "% core")
    series = {"pushcluster": ours.pop("samples")}
    if bare is not None:
        report.info("bare tornado handler, same reply size", bare["rate"], "requests/s")
        report.info("  bare tornado: busiest load-generator process", max(bare["client_cpu"]), "% core")
        report.info("  ratio pushcluster/bare", ours["rate"] / bare["rate"], "x")
        series["bare tornado"] = bare.pop("samples")
        if "httpx" in bare:
            report.info("load-generator CPU per request, raw asyncio client", bare["client_us_per_request"], "us")
            report.info("load-generator CPU per request, httpx.AsyncClient", bare["httpx"]["client_us_per_request"],
                        "us")
            report.info("  bare tornado handler driven by httpx instead", bare["httpx"]["rate"], "requests/s")
            report.info("  busiest httpx load-generator process", max(bare["httpx"]["client_cpu"]), "% core")
    plot_cdf(report, "latency", f"{what}: request latency, closed loop, {args.conns} connections", series)
    report.data["results"] = {"pushcluster": ours, "bare tornado": bare}
