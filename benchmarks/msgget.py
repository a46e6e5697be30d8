"""Scenario ``msgget``: ``GET /1/msg/get?k=K&m=0`` with ``--messages`` stored messages per key.

Redis, a message node and one web process. Before the run, each of ``--keys`` keys gets ``--messages``
messages of about 100 bytes (saved through ``MessageRPC.SavePrivate``); every reply must carry ret 0 and, as
checked on a sample, all of them. The bare baseline answers with a fixed JSON of the same size.
"""
from __future__ import annotations

import argparse
import asyncio

from benchmarks import getbench
from benchmarks.harness import CometAddrs, Cluster, free_port
from benchmarks.loadgen import WorkerPool
from benchmarks.report import Report
from message.client import MessageClient

NAME = "msgget"
TARGET = 3_000.0
PATH = "/1/msg/get?k={key}&m=0"
QUICK = getbench.QUICK


def add_arguments(parser: argparse.ArgumentParser) -> None:
    getbench.add_arguments(parser)
    parser.add_argument("--messages", type=int, default=10, help="stored messages per key")


async def store(message_port: int, keys: list[str], count: int) -> None:
    client = MessageClient(f"127.0.0.1:{message_port}", timeout=10.0)
    try:
        for index in range(count):
            body = b'{"title":"message %d","body":"you have a new notification","url":"/inbox/%d"}' % (index, index)
            for start in range(0, len(keys), 200):
                await asyncio.gather(*(client.save_private(key, body, 3600) for key in keys[start:start + 200]))
    finally:
        await client.close()


def run(args: argparse.Namespace) -> Report:
    report = Report(NAME, {k: v for k, v in vars(args).items() if k != "func"})
    keys = [f"inbox-{i}" for i in range(args.keys)]
    with WorkerPool(args.workers) as pool:
        with Cluster() as cluster:
            redis, redis_port = cluster.redis()
            message, message_port = cluster.message(redis_port)
            comet = CometAddrs(free_port(), free_port(), free_port(), free_port())  # never called
            web, public, _ = cluster.web(message_port, {"node1": comet})
            asyncio.run(store(message_port, keys, args.messages))
            sample = getbench.fetch(public, PATH.format(key=keys[-1]))
            got = len((sample.get("data") or {}).get("msgs", []))
            if sample.get("ret") != 0 or got != args.messages:
                raise RuntimeError(f"/1/msg/get returned ret={sample.get('ret')} with {got} message(s)")
            size = getbench.reply_size(public, PATH.format(key=keys[-1]))
            ours = getbench.load(pool, public, PATH, keys, [web, message, redis], args, "msgget")
        bare = getbench.baseline(pool, size, args, "msgget (bare)") if args.baseline else None
    report.data["reply_bytes"] = size
    getbench.report_rows(report, f"/1/msg/get, {args.messages} stored messages, one web process", ours, bare,
                         TARGET, args)
    return report
