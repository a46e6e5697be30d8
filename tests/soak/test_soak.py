"""Soak: connections churn for a while (open, subscribe, receive a few pushes, close — cleanly, abruptly with a
reset, by letting the heartbeat time out (these get no pushes: the comet may close them any time after
heartbeat + grace), or without ever subscribing), in rounds; after each round has settled
the comet must be back where it started.

The comet and the message node are real processes (so their file descriptors and memory are read in /proc), the
web node runs in the test's event loop (so its asyncio tasks are counted with ``asyncio.all_tasks()``). The comet
runs with a short heartbeat (``min_heartbeat`` 1 s, grace 0.5 s) and first-packet timeout (1 s) so that the
timeouts happen within a round.

After every round, once settled:

* the comet's channel table is empty (``/stat``: 0 connections, 0 keys) and its open file descriptors are
  exactly the baseline's;
* the test process has as many asyncio tasks as at the baseline (the web node keeps none per request);
* every subscriber received exactly the pushes made to its key while it was subscribed, in order.

Memory: RSS never returns exactly (the allocator keeps freed arenas, caches fill up), so it is compared round
over round: the first round takes the comet to its working size; later rounds must not keep growing. The
allowance from the end of round 1 to the end of the last round is ``max(RSS_SLACK_KIB, LEAK_KIB_PER_CONN x
connections of those rounds)``: 2 MiB, or a quarter of a leak of what one connection holds (its protocol
object, transport, buffers and channel entry, about 2 KiB per idle connection in docs/benchmarks.md) when the
rounds are long. In CI (30 s, ~1200 connections a round on a busy 2-core machine) a leak of 2 KiB per connection
would add ~4.8 MiB over rounds 2 and 3 and fail; measured here: +0.2 MiB to +0.5 MiB in 30 s runs, and in a
180 s run +1.5, +0.8, +0.6 MiB per round of ~6000 connections (shrinking increments: the allocator settling, no
per-connection leak; the message node, which holds no client connections, grows the same way).

Duration: ``PUSHCLUSTER_SOAK_SECONDS`` (default 30) of churn in total, split in ``ROUNDS`` rounds;
``PUSHCLUSTER_SOAK_SEED`` picks the clients' choices.
"""
from __future__ import annotations

import asyncio
import json
import os
import random
import socket
import struct
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, AsyncIterator

import pytest
import websockets

from tests.chaos.cluster import wait_until
from tests.chaos.stacks import ProcessStack
from tests.integration.conftest import sub_command
from tests.processes import open_fds, pid_of, rss_kib, tracebacks

SECONDS = float(os.environ.get("PUSHCLUSTER_SOAK_SECONDS", "30"))
SEED = int(os.environ.get("PUSHCLUSTER_SOAK_SEED", "7"))
ROUNDS = 3
WORKERS = 64
KEYS_PER_WORKER = 8
HEARTBEAT = 2                     # seconds, for the clients that let it time out (min_heartbeat is 1)
FIRST_PACKET = 1.0
SETTLE = 15.0                     # seconds for the counters to come back after a round (a bound, not a timing)
STEP = 5.0                        # seconds for any one client step (a hang guard)
RSS_SLACK_KIB = 2 * 1024
LEAK_KIB_PER_CONN = 0.5
MODES = ("clean", "reset", "heartbeat", "silent")
MODE_WEIGHTS = (45, 30, 15, 10)

pytestmark = [pytest.mark.soak, pytest.mark.redis, pytest.mark.integration, pytest.mark.timeout(SECONDS + 120)]


@dataclass
class Round:
    connections: int = 0
    modes: Counter[str] = field(default_factory=Counter)
    pushes: int = 0
    received: int = 0
    mismatches: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class Sample:
    fds: int
    rss_kib: int
    message_fds: int
    message_rss_kib: int
    tasks: int
    connections: int
    keys: int

    def line(self, name: str) -> str:
        return (f"{name:<9} comet fds={self.fds} rss={self.rss_kib} KiB conns={self.connections} keys={self.keys} | "
                f"message fds={self.message_fds} rss={self.message_rss_kib} KiB | test-process tasks={self.tasks}")


@pytest.fixture
async def stack(redis_url: str, tmp_path: Path) -> AsyncIterator[ProcessStack]:
    stack = ProcessStack(redis_url, tmp_path, comet_limits={
        "min_heartbeat": 1, "heartbeat_grace": 0.5, "first_packet_timeout": FIRST_PACKET,
        "timer_tick": 0.25})
    try:
        await stack.start()
        yield stack
    finally:
        await stack.close()


async def test_connections_churn_without_leaks(stack: ProcessStack, record_property: Any) -> None:
    rng = random.Random(SEED)
    await churn(stack, 1.5, rng, Round())   # warm-up: first connections, pools, caches
    samples = [await settled(stack, None)]
    rounds: list[Round] = []
    for n in range(ROUNDS):
        stats = Round()
        await churn(stack, SECONDS / ROUNDS, rng, stats)
        rounds.append(stats)
        samples.append(await settled(stack, samples[0]))
    lines = [samples[0].line("baseline")] + [
        f"{sample.line(f'round {n + 1}')} | {r.connections} connections {dict(r.modes)}, {r.pushes} pushes, "
        f"{r.received} received" for n, (sample, r) in enumerate(zip(samples[1:], rounds))]
    growth = samples[-1].rss_kib - samples[1].rss_kib
    allowed = max(RSS_SLACK_KIB, LEAK_KIB_PER_CONN * sum(r.connections for r in rounds[1:]))
    lines.append(f"comet RSS: +{samples[1].rss_kib - samples[0].rss_kib} KiB in round 1 (to its working size), "
                 f"{growth:+d} KiB from round 1 to round {ROUNDS} (allowed {allowed:.0f} KiB)")
    print(f"\n== soak: {SECONDS:.0f}s, seed {SEED}, {WORKERS} clients ==\n" + "\n".join(lines))
    record_property("connections", sum(r.connections for r in rounds))
    record_property("rss_growth_after_round1_kib", growth)

    mismatches = [m for r in rounds for m in r.mismatches]
    assert not mismatches, f"seed {SEED}: {mismatches[:10]}"
    assert all(r.connections > 0 and set(r.modes) == set(MODES) for r in rounds), lines
    assert growth <= allowed, f"seed {SEED}: the comet keeps growing round over round\n" + "\n".join(lines)
    assert tracebacks(stack.processes()) == {}


async def settled(stack: ProcessStack, baseline: Sample | None) -> Sample:
    """Wait until the comet has no connection and no channel left (and, after the baseline, until fds and tasks
    are back to it); the sample then. The HTTP client starts afresh first, so that the number of idle keep-alive
    connections (each a task in the web node and, for /stat, an fd in the comet) is the same every time."""
    comet_pid = pid_of(stack.comet)
    await stack.reset_http()   # no idle keep-alive connection (each holds a task in the web node, an fd in the comet)

    async def empty() -> bool:
        stat = await stack.comet_stat()
        return bool(sum(stat["connections"].values()) == 0 and stat["keys"] == 0)

    await wait_until(empty, SETTLE, "the comet's channel table empty")
    if baseline is not None:
        try:
            await wait_until(lambda: open_fds(comet_pid) == baseline.fds, SETTLE, "comet fds back to the baseline")
            await wait_until(lambda: _tasks() == baseline.tasks, SETTLE, "asyncio tasks back to the baseline")
        except AssertionError as exc:
            raise AssertionError(f"seed {SEED}: {exc}: comet fds {open_fds(comet_pid)} (baseline {baseline.fds}): "
                                 f"{_fd_targets(comet_pid)}; tasks {_tasks()} (baseline {baseline.tasks}): "
                                 f"{[t.get_coro() for t in asyncio.all_tasks()][:10]}") from None
    stat = await stack.comet_stat()
    message_pid = pid_of(stack.message)
    return Sample(open_fds(comet_pid), rss_kib(comet_pid), open_fds(message_pid), rss_kib(message_pid), _tasks(),
                  sum(stat["connections"].values()), stat["keys"])


def _tasks() -> int:
    return len(asyncio.all_tasks())


def _fd_targets(pid: int) -> Counter[str]:
    kinds: Counter[str] = Counter()
    for fd in os.listdir(f"/proc/{pid}/fd"):
        try:
            kinds[os.readlink(f"/proc/{pid}/fd/{fd}").split(":")[0]] += 1
        except OSError:
            pass
    return kinds


async def churn(stack: ProcessStack, seconds: float, rng: random.Random, stats: Round) -> None:
    """``WORKERS`` clients connecting, subscribing, receiving and closing in a loop for ``seconds``."""
    deadline = time.monotonic() + seconds
    await asyncio.gather(*(_client_loop(stack, w, random.Random(rng.random()), deadline, stats)
                           for w in range(WORKERS)))


async def _client_loop(stack: ProcessStack, worker: int, rng: random.Random, deadline: float, stats: Round) -> None:
    n = 0
    while time.monotonic() < deadline:
        n += 1
        key = f"soak-{worker}-{n % KEYS_PER_WORKER}"
        mode = rng.choices(MODES, MODE_WEIGHTS)[0]
        transport = rng.choice(("tcp", "ws"))
        stats.connections += 1
        stats.modes[mode] += 1
        if transport == "tcp":
            await _tcp_cycle(stack, key, mode, rng, stats)
        else:
            await _ws_cycle(stack, key, mode, rng, stats)


async def _pushes(stack: ProcessStack, key: str, rng: random.Random, stats: Round) -> list[int]:
    """1-3 pushes to ``key``: through the web node's admin API one time in four, else straight to CometRPC (cheaper
    for the test process, so that more connections churn per second); their mids."""
    mids = []
    via_web = rng.random() < 0.25
    for i in range(rng.randint(1, 3)):
        expire = 60 if rng.random() < 0.25 else 0
        body = {"k": key, "n": i, "e": expire}
        if via_web:
            ret, mid = await stack.push(key, body, expire)
            assert ret == 0 and mid is not None, (key, ret)
        else:
            mid = (await stack.comet_client().push_private(key, json.dumps(body).encode(), expire)).mid
        mids.append(mid)
        stats.pushes += 1
    if rng.random() < 0.3:
        assert (await stack.get("/1/msg/get", {"k": key, "m": 0}))["ret"] == 0
    return mids


async def _tcp_cycle(stack: ProcessStack, key: str, mode: str, rng: random.Random, stats: Round) -> None:
    host, port = stack.tcp.rsplit(":", 1)
    reader, writer = await asyncio.wait_for(asyncio.open_connection(host, int(port)), STEP)
    try:
        if mode == "silent":      # a partial command, then nothing: the first-packet timeout closes it
            writer.write(b"*3\r\n$3\r\nsu")
            assert await asyncio.wait_for(reader.read(), FIRST_PACKET + STEP) == b""
            return
        writer.write(sub_command(key, heartbeat=HEARTBEAT if mode == "heartbeat" else 30, version="1.0"))
        assert await asyncio.wait_for(reader.readline(), STEP) == b"+h\r\n"
        pushed = [] if mode == "heartbeat" else await _pushes(stack, key, rng, stats)
        got = []
        for _ in pushed:
            head = await asyncio.wait_for(reader.readline(), STEP)
            body = await asyncio.wait_for(reader.readexactly(int(head[1:-2]) + 2), STEP)
            got.append(json.loads(body)["mid"])
        _compare(stats, key, pushed, got)
        if mode == "heartbeat":   # no heartbeat from us: the comet closes after heartbeat + grace
            assert await asyncio.wait_for(reader.read(), HEARTBEAT + STEP) == b""
        elif mode == "reset":
            sock = writer.get_extra_info("socket")
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            writer.transport.abort()
    finally:
        writer.close()
        try:
            await writer.wait_closed()
        except OSError:
            pass


async def _ws_cycle(stack: ProcessStack, key: str, mode: str, rng: random.Random, stats: Round) -> None:
    if mode == "silent":          # connect and never send the upgrade request
        host, port = stack.ws.rsplit(":", 1)
        reader, writer = await asyncio.wait_for(asyncio.open_connection(host, int(port)), STEP)
        try:
            writer.write(b"GET /sub?key=")
            assert await asyncio.wait_for(reader.read(), FIRST_PACKET + STEP) == b""
        finally:
            writer.close()
            await writer.wait_closed()
        return
    heartbeat = HEARTBEAT if mode == "heartbeat" else 30
    conn = await websockets.connect(f"ws://{stack.ws}/sub?key={key}&heartbeat={heartbeat}&ver=1.0",
                                    open_timeout=STEP, close_timeout=1, ping_interval=None)
    try:
        assert await asyncio.wait_for(conn.recv(), STEP) == "+h\r\n"
        pushed = [] if mode == "heartbeat" else await _pushes(stack, key, rng, stats)
        got = [json.loads(await asyncio.wait_for(conn.recv(), STEP))["mid"] for _ in pushed]
        _compare(stats, key, pushed, got)
        if mode == "heartbeat":
            with pytest.raises(websockets.ConnectionClosed):
                await asyncio.wait_for(conn.recv(), HEARTBEAT + STEP)
        elif mode == "reset":
            conn.transport.abort()
    finally:
        await conn.close()


def _compare(stats: Round, key: str, pushed: list[int], got: list[int]) -> None:
    stats.received += len(got)
    if got != pushed:
        stats.mismatches.append(f"{key}: pushed {pushed}, received {got}")
