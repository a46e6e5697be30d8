"""Scenario ``serverget``: ``GET /1/server/get?k=K&p=1`` against one web process, and the bare tornado handler.

The web process runs alone (the answer comes from its static comet list and the ketama ring; no RPC). Keys
are taken round-robin from ``--keys`` distinct keys; every reply must carry ret 0. The bare handler is also
driven through ``httpx.AsyncClient``, to show what the load generator's own client costs per request.
"""
from __future__ import annotations

import argparse

from benchmarks import getbench
from benchmarks.harness import CometAddrs, Cluster, free_port
from benchmarks.loadgen import WorkerPool
from benchmarks.report import Report

NAME = "serverget"
TARGET = 6_000.0
PATH = "/1/server/get?k={key}&p=1"
QUICK = getbench.QUICK
add_arguments = getbench.add_arguments


def run(args: argparse.Namespace) -> Report:
    report = Report(NAME, {k: v for k, v in vars(args).items() if k != "func"})
    keys = [f"user-{i}" for i in range(args.keys)]
    with WorkerPool(args.workers) as pool:
        with Cluster() as cluster:
            comet = CometAddrs(free_port(), free_port(), free_port(), free_port())  # never called
            web, public, _ = cluster.web(free_port(), {"node1": comet})
            sample = getbench.fetch(public, PATH.format(key=keys[0]))
            if sample.get("ret") != 0:
                raise RuntimeError(f"/1/server/get answered {sample}")
            size = getbench.reply_size(public, PATH.format(key=keys[0]))
            ours = getbench.load(pool, public, PATH, keys, [web], args, "serverget")
        bare = getbench.baseline(pool, size, args, "serverget (bare)", with_httpx=True) if args.baseline else None
    getbench.report_rows(report, "/1/server/get, one web process", ours, bare, TARGET, args)
    return report
