"""Closed-loop ``CometRPC.PushPrivate`` load straight to a comet, without the web: the web's share of a push.

Same shape of result as ``httpclient.closed_loop`` (``done``, ``replies_ok``, ``latency_ns``, ...), with the same
``{"t":<monotonic ns>,"s":N}`` body, so the subscribers measure push-to-receive the same way. One
``comet.client.CometClient`` (one RPC connection, as a web process has) carries every concurrent call.
"""
from __future__ import annotations

import asyncio
import time
from typing import Any

from comet.client import CometClient
from thirdparty.rpc_client import RemoteError, RpcUnavailable


async def rpc_closed_loop(address: str, spec: dict[str, Any], conns: int, warmup: float,
                          duration: float) -> dict[str, Any]:
    keys: list[str] = spec["keys"]
    offset: int = spec.get("offset", 0)
    expire: int = spec.get("expire", 600)
    client = CometClient(address, timeout=30.0)
    start = time.monotonic_ns()
    window = (start + int(warmup * 1e9), start + int((warmup + duration) * 1e9))
    counts = {"done": 0, "errors": 0, "replies_ok": 0}
    latency_ns: list[int] = []
    seq = 0
    cpu0 = 0.0

    async def loop_one() -> None:
        nonlocal seq
        while time.monotonic_ns() < window[1]:
            seq += 1
            stamp = time.monotonic_ns()
            try:
                await client.push_private(keys[(offset + seq) % len(keys)], b'{"t":%d,"s":%d}' % (stamp, seq), expire)
                ok = 1
            except (RpcUnavailable, RemoteError):
                ok = 0
            now = time.monotonic_ns()
            counts["replies_ok"] += ok
            if window[0] <= now <= window[1]:
                counts["done"] += 1
                counts["errors"] += 1 - ok
            if stamp >= window[0] and len(latency_ns) < 200_000:
                latency_ns.append(now - stamp)

    async def cpu_mark() -> None:
        nonlocal cpu0
        await asyncio.sleep(warmup)
        cpu0 = time.process_time()

    try:
        await asyncio.gather(cpu_mark(), *(loop_one() for _ in range(conns)))
    finally:
        await client.close()
    return {**counts, "keys_ok": counts["done"] - counts["errors"], "seconds": duration, "latency_ns": latency_ns,
            "lag_ns": [], "cpu_seconds": time.process_time() - cpu0, "unfinished": 0}
