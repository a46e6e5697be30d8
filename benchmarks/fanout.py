"""Scenario ``fanout``: one comet writing one message to 10,000 connections of one key.

The comet runs with ``[limits] max_conns_per_key`` = the connection count, a message node and Redis behind it
(a push always gets its mid from the message node; ``expire`` 0 so nothing is stored). All subscribers
(TCP and WebSocket alternating by default) subscribe the one key. Each push is a ``CometRPC.PushPrivate`` call
made from this process; the message carries ``"t"`` = ``time.monotonic_ns()`` taken just before the call, and
each subscriber notes when it received it (one clock for every process). Deliveries per second =
connections / (last receipt - t); the figure is the median over ``--pushes`` pushes. The bare baseline does
the same writes from a tornado HTTP handler (``POST /push``) with no RPC, no mid and no bookkeeping. The floor
(``benchmarks.sendfloor``) is a plain loop of ``send()`` over as many loopback sockets, with no event loop and
nobody reading: on loopback each send also runs the receiving half of the kernel's TCP stack, so no process
writing once per connection gets past it.
"""
from __future__ import annotations

import argparse
import asyncio
import http.client
import json
import statistics
import subprocess
import sys
import time
from typing import Any, Awaitable, Callable

from comet.client import CometClient
from benchmarks.common import client_status, open_subscribers, wait_received
from benchmarks.fleet import Target
from benchmarks.harness import REPO, Cluster, CpuMeter, die_with_parent
from benchmarks.loadgen import WorkerPool
from benchmarks.report import Report, latency_summary, plot_cdf

NAME = "fanout"
KEY = "fanout"
TARGET_RATE = 200_000.0
QUICK = {"conns": 2000, "pushes": 3}
PROTOS = {"mixed": ["tcp", "ws"], "tcp": ["tcp"], "ws": ["ws"]}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--conns", type=int, default=10_000, help="connections on the one key")
    parser.add_argument("--pushes", type=int, default=7, help="measured pushes (median reported)")
    parser.add_argument("--proto", choices=list(PROTOS), default="mixed")
    parser.add_argument("--workers", type=int, default=2, help="load-generator processes")
    parser.add_argument("--concurrency", type=int, default=64, help="in-flight handshakes per worker")
    parser.add_argument("--no-baseline", dest="baseline", action="store_false", help="skip the bare tornado run")
    parser.add_argument("--no-floor", dest="floor", action="store_false", help="skip the kernel send() floor")


Push = Callable[[bytes], Awaitable[Any]]


def send_floor(conns: int) -> dict[str, Any]:
    """Run ``benchmarks.sendfloor`` (its own processes, nothing else running): the best sends/s of a plain loop."""
    done = subprocess.run([sys.executable, "-m", "benchmarks.sendfloor", str(conns)], cwd=REPO, capture_output=True,
                          timeout=180, check=True, preexec_fn=die_with_parent)
    floor: dict[str, Any] = json.loads(done.stdout)
    return floor


async def measure(pool: WorkerPool, conns: int, pushes: int, push: Push) -> dict[str, Any]:
    """One warm-up push, then ``pushes`` measured ones; each waits until every subscriber got it."""
    rates, call_ms, samples = [], [], []
    for index in range(pushes + 1):
        pool.broadcast({"op": "reset"})
        t0 = time.monotonic_ns()
        await push(b'{"t":%d,"n":%d}' % (t0, index))
        replied = time.monotonic_ns()
        got = wait_received(pool, conns, timeout=30.0)
        if got["count"] < conns:
            raise RuntimeError(f"push {index}: only {got['count']} of {conns} subscribers received it")
        if index:  # the first push is a warm-up
            rates.append(conns / ((got["last_ns"] - t0) / 1e9))
            call_ms.append((replied - t0) / 1e6)
            samples.extend(got["samples"])
        await asyncio.sleep(0.3)
    return {"rates": rates, "rate": statistics.median(rates), "call_ms": statistics.median(call_ms),
            "samples": samples}


def _targets(proto: str, ports: dict[str, int]) -> list[Target]:
    return [(p, "127.0.0.1", ports[p]) for p in PROTOS[proto]]


def run_pushcluster(pool: WorkerPool, args: argparse.Namespace) -> dict[str, Any]:
    with Cluster() as cluster:
        redis, redis_port = cluster.redis()
        message, message_port = cluster.message(redis_port)
        comet, addrs = cluster.comet(message_port, {"max_conns_per_key": args.conns, "first_packet_timeout": 30.0})
        opened = open_subscribers(pool, _targets(args.proto, {"tcp": addrs.tcp, "ws": addrs.ws}),
                                  [KEY] * args.conns, args.concurrency, f"fanout: open {args.conns:,}")
        if opened["opened"] < args.conns:
            raise RuntimeError(f"only {opened['opened']} of {args.conns} subscribed: {opened['errors']}")
        client = CometClient(f"127.0.0.1:{addrs.rpc}", timeout=30.0)

        async def push(body: bytes) -> None:
            result = await client.push_private(KEY, body, 0)
            if result.online != args.conns:
                raise RuntimeError(f"comet wrote to {result.online} connections, not {args.conns}")

        async def main() -> dict[str, Any]:
            try:
                meter = CpuMeter({"comet": comet.pid, "message": message.pid, "redis": redis.pid})
                result = await measure(pool, args.conns, args.pushes, push)
                result["cpu"] = meter.percent()
                return result
            finally:
                await client.close()

        result = asyncio.run(main())
        result["status"] = client_status(pool)
        pool.broadcast({"op": "close"}, timeout=60)
        return result


def run_baseline(pool: WorkerPool, args: argparse.Namespace) -> dict[str, Any]:
    with Cluster() as cluster:
        _, ports = cluster.baseline()
        opened = open_subscribers(pool, _targets(args.proto, ports), [KEY] * args.conns, args.concurrency,
                                  f"fanout (bare): open {args.conns:,}")
        if opened["opened"] < args.conns:
            raise RuntimeError(f"bare: only {opened['opened']} of {args.conns} subscribed: {opened['errors']}")
        connection = http.client.HTTPConnection("127.0.0.1", ports["http"], timeout=30)

        def post(path: str) -> Push:
            async def push(body: bytes) -> None:
                connection.request("POST", path, body=body)
                connection.getresponse().read()
            return push


        try:
            result = asyncio.run(measure(pool, args.conns, args.pushes, post(f"/push?key={KEY}")))
        finally:
            connection.close()
        pool.broadcast({"op": "close"}, timeout=60)
        return result


def run(args: argparse.Namespace) -> Report:
    report = Report(NAME, {k: v for k, v in vars(args).items() if k != "func"})
    with WorkerPool(args.workers) as pool:
        report.data["clock_bracket_ns"] = pool.check_clock()
        ours = run_pushcluster(pool, args)
        bare = run_baseline(pool, args) if args.baseline else None
    report.data["pushcluster"] = {k: v for k, v in ours.items() if k != "samples"} | {
        "latency_ms": latency_summary(ours["samples"])}
    report.check(f"fan-out to {args.conns:,} connections ({args.proto}), median of {args.pushes}", ours["rate"],
                 "deliveries/s", ">=", TARGET_RATE)
    latency = latency_summary(ours["samples"])
    report.info("  time to the last connection", args.conns / ours["rate"] * 1000, "ms")
    report.info("  push RPC reply (comet wrote every frame)", ours["call_ms"], "ms")
    report.info("  receive latency p50 over all connections", latency["p50"], "ms")
    report.info("  comet CPU during the pushes", ours["cpu"]["comet"], "% core")
    series = {"pushcluster": ours["samples"]}
    if bare is not None:
        report.data["bare"] = {k: v for k, v in bare.items() if k != "samples"} | {
            "latency_ms": latency_summary(bare["samples"])}
        report.info("bare tornado fan-out (IOStream.write / write_message)", bare["rate"], "deliveries/s")
        report.info("  ratio pushcluster/bare tornado", ours["rate"] / bare["rate"], "x")
        series["bare tornado"] = bare["samples"]
    if args.floor:
        floor = send_floor(args.conns)
        report.data["floor"] = floor
        report.info(f"kernel floor: plain send() loop over {args.conns:,} loopback sockets", floor["sends_per_s"],
                    "sends/s")
        report.info("  ratio pushcluster/floor", ours["rate"] / floor["sends_per_s"], "x")
    plot_cdf(report, "latency", f"Fan-out: time from push call to receipt, {args.conns:,} connections", series)
    return report
