"""Scenario ``broadcast``: one comet writing public messages to 10,000 connections of 10,000 keys, paced.

The comet runs with its ``[broadcast]`` defaults (``rate`` 50,000 connection writes per second, ``chunk`` 128)
unless ``--rate`` / ``--chunk`` say otherwise, with a message node and Redis behind it. Every subscriber (TCP and
WebSocket alternating) subscribes a key of its own. Each broadcast is a ``CometRPC.PushPublic`` call made from
this process, carrying ``"t"`` = ``time.monotonic_ns()`` taken just before the call; deliveries per second =
connections / (last receipt - t), the median over ``--broadcasts`` broadcasts. Judged: the comet keeps the
configured pace (at least 90 % of ``rate``; a comet that cannot keep it is slower than its own cap).

While the broadcasts run, a probe subscriber of its own key (in this process) gets a private push
(``CometRPC.PushPrivate``, stored by the message node, expire 0) every ``--probe-interval`` seconds; its
push-to-receive latency is compared with the same probe on the idle comet. Judged: p99 during broadcasts within
the push latency target (15 ms): the chunked, paced broadcast never starves private pushes.
"""
from __future__ import annotations

import argparse
import asyncio
import statistics
import time
from typing import Any

from benchmarks.common import client_status, comet_stat, open_subscribers, wait_received
from benchmarks.harness import Cluster
from benchmarks.loadgen import WorkerPool
from benchmarks.report import Report, latency_summary, plot_cdf
from benchmarks.subclient import RECORDER, TcpSubscriber, tcp_subscribe_command
from comet.client import CometClient

NAME = "broadcast"
PROBE_KEY = "broadcast-probe"
TARGET_PACE = 0.9        # of the configured rate
TARGET_PROBE_P99_MS = 15.0
QUICK = {"conns": 2000, "broadcasts": 3}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--conns", type=int, default=10_000, help="connections, one key each")
    parser.add_argument("--broadcasts", type=int, default=5, help="measured broadcasts (median reported)")
    parser.add_argument("--rate", type=float, default=50_000.0, help="the comet's [broadcast] rate (writes/s)")
    parser.add_argument("--chunk", type=int, default=128, help="the comet's [broadcast] chunk (writes per pass)")
    parser.add_argument("--probe-interval", type=float, default=0.005, help="seconds between private probe pushes")
    parser.add_argument("--workers", type=int, default=2, help="load-generator processes")
    parser.add_argument("--concurrency", type=int, default=64, help="in-flight handshakes per worker")


async def _probe_subscriber(port: int) -> TcpSubscriber:
    loop = asyncio.get_running_loop()
    waiter: asyncio.Future[None] = loop.create_future()
    _, protocol = await loop.create_connection(
        lambda: TcpSubscriber(waiter, tcp_subscribe_command(PROBE_KEY, 300)), "127.0.0.1", port)
    await asyncio.wait_for(waiter, 10)
    return protocol


async def _probe_pushes(client: CometClient, interval: float, stop: asyncio.Event) -> int:
    """Push ``{"t": now}`` to the probe key every ``interval`` seconds until ``stop``; the number pushed."""
    sent = 0
    while not stop.is_set():
        await client.push_private(PROBE_KEY, b'{"t":%d}' % time.monotonic_ns(), 0)
        sent += 1
        try:
            await asyncio.wait_for(stop.wait(), interval)
        except asyncio.TimeoutError:
            pass
    return sent


async def _measure(pool: WorkerPool, client: CometClient, args: argparse.Namespace) -> dict[str, Any]:
    """Idle probe first, then the broadcasts with the probe running beside them."""
    stop = asyncio.Event()
    RECORDER.reset()
    idle_task = asyncio.create_task(_probe_pushes(client, args.probe_interval, stop))
    await asyncio.sleep(2.0)
    stop.set()
    idle_sent = await idle_task
    await asyncio.sleep(0.2)
    idle = {"sent": idle_sent, "received": RECORDER.count, "samples": list(RECORDER.samples)}

    rates, samples, probe_samples, probe_sent, probe_received = [], [], [], 0, 0
    for index in range(args.broadcasts + 1):
        pool.broadcast({"op": "reset"})
        RECORDER.reset()
        stop = asyncio.Event()
        probe = asyncio.create_task(_probe_pushes(client, args.probe_interval, stop))
        t0 = time.monotonic_ns()
        online = await client.push_public(t0 // 100, b'{"t":%d,"n":%d}' % (t0, index))
        if online != args.conns + 1:  # the probe's connection gets the broadcast too
            raise RuntimeError(f"comet will write to {online} connections, not {args.conns + 1}")
        got = await asyncio.to_thread(wait_received, pool, args.conns, 60.0)
        stop.set()
        sent = await probe
        if got["count"] < args.conns:
            raise RuntimeError(f"broadcast {index}: only {got['count']} of {args.conns} subscribers received it")
        if index:  # the first broadcast is a warm-up
            rates.append(args.conns / ((got["last_ns"] - t0) / 1e9))
            samples.extend(got["samples"])
            probe_samples.extend(RECORDER.samples)
            probe_sent += sent
            probe_received += RECORDER.count
        await asyncio.sleep(0.3)
    return {"rates": rates, "rate": statistics.median(rates), "samples": samples, "idle": idle,
            "probe": {"sent": probe_sent, "received": probe_received, "samples": probe_samples}}


def run_pushcluster(pool: WorkerPool, args: argparse.Namespace) -> dict[str, Any]:
    with Cluster() as cluster:
        _, redis_port = cluster.redis()
        _, message_port = cluster.message(redis_port)
        comet, addrs = cluster.comet(message_port, {"first_packet_timeout": 30.0},
                                     sections={"broadcast": {"rate": args.rate, "chunk": args.chunk}})
        keys = [f"b{index}" for index in range(args.conns)]
        opened = open_subscribers(pool, [("tcp", "127.0.0.1", addrs.tcp), ("ws", "127.0.0.1", addrs.ws)], keys,
                                  args.concurrency, f"broadcast: open {args.conns:,}")
        if opened["opened"] < args.conns:
            raise RuntimeError(f"only {opened['opened']} of {args.conns} subscribed: {opened['errors']}")

        async def main() -> dict[str, Any]:
            client = CometClient(f"127.0.0.1:{addrs.rpc}", timeout=30.0)
            RECORDER.skip = b'"gid":1'  # the probe connection gets the broadcasts too: only its private pushes count
            probe = await _probe_subscriber(addrs.tcp)
            try:
                return await _measure(pool, client, args)
            finally:
                probe.close()
                await client.close()

        result = asyncio.run(main())
        result["stat"] = comet_stat(addrs.stat).get("broadcast", {})
        result["status"] = client_status(pool)
        pool.broadcast({"op": "close"}, timeout=60)
        return result


def run(args: argparse.Namespace) -> Report:
    report = Report(NAME, {k: v for k, v in vars(args).items() if k != "func"})
    with WorkerPool(args.workers) as pool:
        report.data["clock_bracket_ns"] = pool.check_clock()
        ours = run_pushcluster(pool, args)
    probe, idle = ours["probe"], ours["idle"]
    during, before = latency_summary(probe["samples"]), latency_summary(idle["samples"])
    report.data["pushcluster"] = {"rates": ours["rates"], "rate": ours["rate"], "stat": ours["stat"],
                                  "status": ours["status"], "latency_ms": latency_summary(ours["samples"]),
                                  "probe": {"sent": probe["sent"], "received": probe["received"],
                                            "latency_ms": during},
                                  "idle_probe": {"sent": idle["sent"], "received": idle["received"],
                                                 "latency_ms": before}}
    report.check(f"broadcast pace, {args.conns:,} connections, median of {args.broadcasts} (of the rate cap)",
                 ours["rate"] / args.rate, "x", ">=", TARGET_PACE)
    report.info(f"  deliveries per second (cap {args.rate:,.0f}/s, chunk {args.chunk})", ours["rate"], "/s")
    report.info("  time to the last connection", args.conns / ours["rate"] * 1000, "ms")
    report.check("private push p99 while broadcasting (probe key)", during["p99"], "ms", "<=", TARGET_PROBE_P99_MS)
    report.info("  private push p50 while broadcasting", during["p50"], "ms")
    report.info("  private push p50 / p99 on the idle comet", before["p50"], "ms")
    report.info("  ", before["p99"], "ms (idle p99)")
    report.info("  probe pushes received / sent during the broadcasts", probe["received"] / max(1, probe["sent"]), "x")
    plot_cdf(report, "probe", "Private push latency on a comet that is broadcasting",
             {"during broadcasts": probe["samples"], "idle comet": idle["samples"]})
    return report
