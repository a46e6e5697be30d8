"""Scenario ``tags``: ``POST /push/tags`` end to end, and what resolving the expression costs next to
``POST /push/mprivate`` of the same keys.

Web, comet, message and Redis run as separate processes; ``--keys`` keys (``tg-0`` ...) have one subscriber each
(TCP and WebSocket alternating). Every key is tagged through the admin API (``POST /key/tags``, ``--concurrency``
requests in flight from this process): every key ``all``, even ones ``android``, a quarter ``beta`` (index % 8 is
0 or 1, so android AND beta is an eighth), a tenth ``staff`` (index % 10 == 3, none of them android).

Then, each ``--runs`` times after a warm-up (median reported):
(1) resolution only: ``GET /tag/keys`` paged (1000 per page) through ``[["all"]]`` and
``[["android","beta"],["staff"]]``, keys resolved per second, each result checked against the expected keys; the
same pages as ``MessageRPC.TagKeys`` calls straight to the message node (no web): the directory's own cost;
(2) ``POST /push/tags`` of both expressions: keys per second = resolved keys / (last subscriber's receipt - request
sent), and the HTTP reply time;
(3) the keys of ``[["all"]]`` through ``POST /push/mprivate``, ``--batch`` keys per request, one request after
another on one connection (as /push/tags pushes a comet's batches) and, for information, all at once.
Judged: /push/tags of ``[["all"]]`` reaches 0.8 x the sequential mprivate keys/s of the same run (resolution costs
under 20 %). Every key acknowledged (not in ``fk``) must reach its subscriber, every reply be ret 0; CPU µs per key
of every process (load-generator workers: the busiest).
"""
from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import time
import urllib.parse
from functools import partial
from typing import Any, Awaitable, Callable

from benchmarks.adminhttp import AdminHttp
from benchmarks.common import open_subscribers, wait_received
from benchmarks.harness import Cluster, CpuMeter, cpu_seconds
from benchmarks.loadgen import WorkerPool
from benchmarks.report import Report, latency_summary, plot_bars, plot_cdf
from message.client import MessageClient
from thirdparty.runtime import loop_factory

NAME = "tags"
TARGET_RATIO = 0.8
PAGE = 1000
EXPIRE = 600
EXPRESSIONS = {"[[all]]": [["all"]], "[[android,beta],[staff]]": [["android", "beta"], ["staff"]]}
QUICK = {"keys": 1000, "runs": 2}
Send = Callable[[bytes], Awaitable[int]]   # pushes one message, returns the keys acknowledged


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--keys", type=int, default=10_000, help="subscribed and tagged keys (one subscriber each)")
    parser.add_argument("--runs", type=int, default=5, help="measured runs of each step (median reported)")
    parser.add_argument("--batch", type=int, default=1000, help="keys per /push/mprivate request")
    parser.add_argument("--concurrency", type=int, default=32, help="POST /key/tags requests in flight")
    parser.add_argument("--workers", type=int, default=2, help="load-generator processes")


def key_tags(index: int) -> list[str]:
    """The tags of key number ``index``: all; android (even); beta (index % 8 < 2); staff (index % 10 == 3)."""
    tags = ["all"]
    if index % 2 == 0:
        tags.append("android")
    if index % 8 in (0, 1):
        tags.append("beta")
    if index % 10 == 3:
        tags.append("staff")
    return tags


def matching(keys: list[str], expression: list[list[str]]) -> list[str]:
    """The keys ``expression`` should resolve to, ascending (the keys are ASCII: code points order as bytes)."""
    tagged = [set(key_tags(index)) for index in range(len(keys))]
    return sorted(key for key, tags in zip(keys, tagged) if any(set(group) <= tags for group in expression))


class CpuUse:
    """CPU seconds of some processes between ``__init__`` and ``per_unit``, as µs per unit of work."""
    def __init__(self, pids: dict[str, int]) -> None:
        self.pids = pids
        self.start = {name: cpu_seconds(pid) for name, pid in pids.items()}

    def per_unit(self, units: int) -> dict[str, float]:
        return {name: 1e6 * (cpu_seconds(pid) - self.start[name]) / max(1, units) for name, pid in self.pids.items()}


async def tag_all(admin: AdminHttp, keys: list[str]) -> float:
    """Tag every key (``POST /key/tags``, one request in flight per connection); tag writes per second."""
    async def work(index: int, conn: int) -> None:
        data = await admin.call("POST", f"/key/tags?key={keys[index]}", json.dumps(key_tags(index)).encode(), conn)
        if data["tags"] != sorted(key_tags(index)):
            raise RuntimeError(f"key={keys[index]}: tags stored as {data['tags']}")

    start = time.perf_counter()
    await admin.each(range(len(keys)), work)
    return len(keys) / (time.perf_counter() - start)


Page = Callable[[str], Awaitable[tuple[list[str], str | None]]]   # after -> (keys, next cursor or None)


def web_page(admin: AdminHttp, expression: list[list[str]]) -> Page:
    """One ``GET /tag/keys`` page of ``expression``."""
    tags = urllib.parse.quote(json.dumps(expression, separators=(",", ":")))

    async def page(after: str) -> tuple[list[str], str | None]:
        data = await admin.call("GET", f"/tag/keys?tags={tags}&after={urllib.parse.quote(after)}&count={PAGE}")
        return data["keys"], data["next"]
    return page


async def resolve(page: Page) -> tuple[list[str], int]:
    """Every key, page after page from the start: (keys, pages)."""
    keys: list[str] = []
    cursor: str | None = ""
    pages = 0
    while cursor is not None:
        found, cursor = await page(cursor)
        keys.extend(found)
        pages += 1
    return keys, pages


async def time_resolution(resolve: Callable[[], Awaitable[tuple[list[str], int]]], expected: list[str],
                          runs: int) -> dict[str, Any]:
    """A warm-up and ``runs`` timed resolutions, each checked against ``expected``."""
    rates, page_ms = [], []
    for index in range(runs + 1):
        start = time.perf_counter()
        keys, pages = await resolve()
        seconds = time.perf_counter() - start
        if keys != expected:
            differ = set(keys) ^ set(expected)
            raise RuntimeError(f"resolved {len(keys)} keys, expected {len(expected)}: differ in {differ!r:.200}")
        if index:
            rates.append(len(keys) / seconds)
            page_ms.append(1000 * seconds / pages)
    return {"rate": statistics.median(rates), "rates": rates, "page_ms": statistics.median(page_ms),
            "keys": len(expected)}


async def time_pushes(pool: WorkerPool, send: Send, runs: int, cpu_pids: dict[str, int]) -> dict[str, Any]:
    """A warm-up push and ``runs`` measured ones, each waited for until every acknowledged key's subscriber has
    it; keys/s from sending the request to the last receipt, the reply time, CPU µs per key of ``cpu_pids``."""
    rates, reply_ms, samples = [], [], []
    acked_total = received_total = 0
    cpu: CpuUse | None = None
    for index in range(runs + 1):
        pool.broadcast({"op": "reset"})
        t0 = time.monotonic_ns()
        acked = await send(b'{"t":%d,"n":%d}' % (t0, index))
        replied = time.monotonic_ns()
        got = await asyncio.to_thread(wait_received, pool, acked, 30.0)
        if got["count"] < acked:
            raise RuntimeError(f"push {index}: {got['count']} of {acked} acknowledged keys received")
        if index:  # the first push is a warm-up
            rates.append(acked / ((got["last_ns"] - t0) / 1e9))
            reply_ms.append((replied - t0) / 1e6)
            samples.extend(got["samples"])
            acked_total += acked
            received_total += got["count"]
        else:
            cpu = CpuUse(cpu_pids)
        await asyncio.sleep(0.3)
    assert cpu is not None
    return {"rate": statistics.median(rates), "rates": rates, "reply_ms": statistics.median(reply_ms),
            "acked": acked_total, "received": received_total, "samples": samples,
            "cpu_us_per_key": cpu.per_unit(acked_total)}


def tag_push(admin: AdminHttp, expression: list[list[str]], expected: int, fk: list[str]) -> Send:
    """One ``POST /push/tags`` of ``expression``, which must resolve to ``expected`` keys."""
    async def send(message: bytes) -> int:
        body = json.dumps({"m": message.decode(), "tags": expression}).encode()
        data = await admin.call("POST", f"/push/tags?expire={EXPIRE}", body)
        if data["keys"] != expected:
            raise RuntimeError(f"/push/tags resolved {data['keys']} keys, expected {expected}")
        fk.extend(data["fk"])
        return int(data["keys"]) - len(data["fk"])
    return send


def mprivate_push(admin: AdminHttp, keys: list[str], batch: int, together: bool, fk: list[str]) -> Send:
    """The keys in requests of ``batch``: one after another on connection 0, or ``together`` (one per connection)."""
    lists = [",".join(keys[start:start + batch]) for start in range(0, len(keys), batch)]

    async def one(message: bytes, index: int) -> int:
        body = b'{"m":%b,"k":"%b"}' % (json.dumps(message.decode()).encode(), lists[index].encode())
        data = await admin.call("POST", f"/push/mprivate?expire={EXPIRE}", body, index if together else 0)
        fk.extend(data["fk"])
        return lists[index].count(",") + 1 - len(data["fk"])

    async def send(message: bytes) -> int:
        if together:
            return sum(await asyncio.gather(*(one(message, index) for index in range(len(lists)))))
        return sum([await one(message, index) for index in range(len(lists))])
    return send


async def measure(pool: WorkerPool, admin_port: int, message_port: int, pids: dict[str, int],
                  args: argparse.Namespace) -> dict[str, Any]:
    keys = [f"tg-{index}" for index in range(args.keys)]
    admin = AdminHttp(admin_port)
    client = MessageClient(f"127.0.0.1:{message_port}", timeout=30.0)
    result: dict[str, Any] = {"fk": []}
    try:
        await admin.open(max(args.concurrency, -(-args.keys // args.batch)))
        meter = CpuMeter(pids)
        result["tag_writes"] = await tag_all(admin, keys)
        result["tagging_cpu"] = meter.percent()
        for label, expression in EXPRESSIONS.items():
            expected = matching(keys, expression)
            result[f"web {label}"] = await time_resolution(partial(resolve, web_page(admin, expression)),
                                                           expected, args.runs)
            result[f"rpc {label}"] = await time_resolution(  # MessageRPC.TagKeys straight to the message node
                partial(resolve, partial(client.tag_keys, expression, count=PAGE)), expected, args.runs)
            result[f"push {label}"] = await time_pushes(pool, tag_push(admin, expression, len(expected),
                                                                       result["fk"]), args.runs, pids)
        for mode, together in (("sequential", False), ("together", True)):
            result[f"mprivate {mode}"] = await time_pushes(
                pool, mprivate_push(admin, keys, args.batch, together, result["fk"]), args.runs, pids)
        result["calls"], result["failed"] = admin.calls, admin.failed
        return result
    finally:
        admin.close()
        await client.close()


def run_pushcluster(pool: WorkerPool, args: argparse.Namespace) -> dict[str, Any]:
    with Cluster() as cluster:
        redis, redis_port = cluster.redis()
        message, message_port = cluster.message(redis_port)
        comet, addrs = cluster.comet(message_port, {"first_packet_timeout": 30.0})
        web, _, admin_port = cluster.web(message_port, {"node1": addrs})
        keys = [f"tg-{index}" for index in range(args.keys)]
        opened = open_subscribers(pool, [("tcp", "127.0.0.1", addrs.tcp), ("ws", "127.0.0.1", addrs.ws)], keys, 64,
                                  f"tags: open {args.keys:,}")
        if opened["opened"] < args.keys:
            raise RuntimeError(f"only {opened['opened']} of {args.keys} subscribed: {opened['errors']}")
        pids = {p.name: p.pid for p in (web, comet, message, redis)} | {"bench client": os.getpid()}
        pids |= {f"loadgen-{index}": pid for index, pid in enumerate(pool.pids())}
        with asyncio.Runner(loop_factory=loop_factory()) as runner:
            result = runner.run(measure(pool, admin_port, message_port, pids, args))
        pool.broadcast({"op": "close"}, timeout=60)
        return result


def report_cpu(report: Report, title: str, per_key: dict[str, float]) -> None:
    loadgen = {name: value for name, value in per_key.items() if name.startswith("loadgen-")}
    for name, value in per_key.items():
        if name not in loadgen:
            report.info(f"    CPU {name}, {title}", value, "µs/key")
    report.info(f"    CPU busiest load-generator process, {title}", max(loadgen.values(), default=0.0), "µs/key")


def run(args: argparse.Namespace) -> Report:
    report = Report(NAME, {k: v for k, v in vars(args).items() if k != "func"})
    with WorkerPool(args.workers) as pool:
        report.data["clock_bracket_ns"] = pool.check_clock()
        ours = run_pushcluster(pool, args)
    tag_all_push, sequential = ours["push [[all]]"], ours["mprivate sequential"]
    report.check(f"/push/tags [[all]] keys/s, of mprivate's ({args.batch} keys per request, one after another)",
                 tag_all_push["rate"] / sequential["rate"], "x", ">=", TARGET_RATIO)
    report.info(f"tagging: POST /key/tags, {args.concurrency} in flight", ours["tag_writes"], "writes/s")
    for name, percent in ours["tagging_cpu"].items():
        if not name.startswith("loadgen-"):
            report.info(f"  CPU {name} while tagging", percent, "% core")
    for label in EXPRESSIONS:
        web, rpc, push = ours[f"web {label}"], ours[f"rpc {label}"], ours[f"push {label}"]
        report.info(f"resolve {label} ({web['keys']:,} keys): GET /tag/keys, median of {args.runs}", web["rate"],
                    "keys/s")
        report.info(f"  time per page of {PAGE} (web)", web["page_ms"], "ms")
        report.info("  MessageRPC.TagKeys straight to the message node", rpc["rate"], "keys/s")
        report.info("  time per page (message node)", rpc["page_ms"], "ms")
        report.info(f"push {label}: POST /push/tags to the last receipt, median of {args.runs}", push["rate"],
                    "keys/s")
        report.info("  HTTP reply time", push["reply_ms"], "ms")
        report.info("  resolution's share of the push time (GET /tag/keys time / push time)",
                    push["rate"] / web["rate"], "x")
    report_cpu(report, "/push/tags [[all]]", tag_all_push["cpu_us_per_key"])
    for mode in ("sequential", "together"):
        result = ours[f"mprivate {mode}"]
        report.info(f"mprivate, {args.batch} keys per request, {mode}, to the last receipt", result["rate"], "keys/s")
        report.info("  HTTP reply time (all requests)", result["reply_ms"], "ms")
    report_cpu(report, "mprivate sequential", sequential["cpu_us_per_key"])
    pushes = [ours[f"push {label}"] for label in EXPRESSIONS] + [sequential, ours["mprivate together"]]
    report.check("messages received / keys acknowledged (every push)",
                 100.0 * sum(p["received"] for p in pushes) / max(1, sum(p["acked"] for p in pushes)), "%", ">=",
                 100.0)
    report.check(f"failed admin requests (ret != 0 or HTTP error) of {ours['calls']:,}", ours["failed"], "", "<=", 0)
    report.check("keys in fk (not pushed)", len(ours["fk"]), "", "<=", 0)
    plot_cdf(report, "latency", f"Push to receive, {args.keys:,} tagged keys",
             {"/push/tags [[all]]": tag_all_push["samples"],
              "/push/tags [[android,beta],[staff]]": ours["push [[android,beta],[staff]]"]["samples"],
              f"mprivate {args.batch}/request, one after another": sequential["samples"]})
    plot_bars(report, "rates", f"Keys pushed per second, {args.keys:,} tagged keys", "keys/s to the last receipt",
              {**{f"/push/tags {label}": ours[f"push {label}"]["rate"] for label in EXPRESSIONS},
               f"mprivate {args.batch}/request, one after another": sequential["rate"],
               f"mprivate {args.batch}/request, all at once": ours["mprivate together"]["rate"]}, log=False)
    for push in pushes:
        push["latency_ms"] = latency_summary(push.pop("samples"))
    report.data["pushcluster"] = ours
    return report
