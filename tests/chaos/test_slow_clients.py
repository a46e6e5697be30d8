"""Slow and stalled clients cost a bounded amount and are closed; the other clients are not held up.

* Readers that never read (a TCP and a WebSocket subscriber with a 4 KiB receive buffer that stop reading after
  ``+h``) while pushes flood their key: the comet closes both with the documented "queue overflow" close
  (docs/protocol.md, ``limits.max_queue``), its memory stays bounded (its RSS grows by far less than the flood it
  would have had to buffer), and subscribers of another key keep receiving each of their messages (within a
  generous bound: this checks "not stuck behind the slow ones", not a speed).
* Slowloris on every listener: connections that never finish their first request (nothing at all, or a partial
  subscribe command / upgrade request / HTTP request / RPC frame trickled a byte at a time) are closed by the
  server within the listener's documented timeout, while the listener goes on serving others.
"""
from __future__ import annotations

import asyncio
import json
import time
from pathlib import Path
from typing import Any, AsyncIterator, Awaitable, Callable

import pytest

from comet.client import CometClient
from tests.chaos.rawclients import drained, hold, stalled_tcp, stalled_ws
from tests.chaos.stacks import InProcessStack, ProcessStack
from tests.integration.conftest import TcpSubscriber, ws_subscribe
from tests.processes import pid_of, rss_kib, tracebacks
from thirdparty import rpc_server
from thirdparty.rpc_client import RpcClient
from thirdparty.rpc_codec import encode_request

pytestmark = [pytest.mark.chaos, pytest.mark.redis, pytest.mark.integration]

MAX_QUEUE = 16
FLOOD = 600                         # pushes to the slow key
BIG = 60 * 1024                     # bytes per flood message (the comet's limit is 64 KiB)
RSS_BOUND_KIB = 32 * 1024           # the comet's RSS may grow this much; the flood is 2 x 600 x 60 KiB = 70 MiB
FAST_BOUND = 5.0                    # seconds: a message to another key arrives within this (a hang guard)
FIRST_PACKET = 1.0                  # comet limits.first_packet_timeout in these tests
WEB_TIMEOUT = 1.0                   # web limits.idle_timeout and body_timeout in these tests
TICK = 0.5                          # comet limits.timer_tick (default): deadlines fire up to two ticks late
SLACK = 2.0                         # seconds of scheduling slack on a busy machine
RPC_FRAME_TIMEOUT = float(getattr(rpc_server, "DEFAULT_FRAME_TIMEOUT", 5.0))   # see the xfail below
LORIS = 5                           # slowloris connections per listener


# -- slow readers ----------------------------------------------------------------------------------------------

@pytest.fixture
async def processes(redis_url: str, tmp_path: Path) -> AsyncIterator[ProcessStack]:
    stack = ProcessStack(redis_url, tmp_path, comet_limits={"max_queue": MAX_QUEUE})
    try:
        await stack.start()
        yield stack
    finally:
        await stack.close()


async def test_readers_that_never_read_are_closed_and_cost_bounded_memory(processes: ProcessStack,
                                                                         record_property: Any) -> None:
    stack = processes
    comet = CometClient(stack.comet_rpc, timeout=10)
    fast_tcp = await TcpSubscriber.connect(_split(stack.tcp), "fast")
    fast_ws = await ws_subscribe(f"ws://{stack.ws}", "fast")
    slow = [await stalled_tcp(stack.tcp, "slow"), await stalled_ws(stack.ws, "slow")]
    try:
        assert (await stack.comet_stat())["connections"] == {"tcp": 2, "ws": 2}
        pid = pid_of(stack.comet)
        rss_before = peak = rss_kib(pid)
        big = json.dumps({"pad": "x" * BIG}).encode()
        online: list[int] = []
        slowest = 0.0
        for n in range(FLOOD):
            online.append((await comet.push_private("slow", big, 0)).online)
            if n % 50 == 0:
                peak = max(peak, rss_kib(pid))
                slowest = max(slowest, await _round_trip(comet, fast_tcp, fast_ws, n))
        peak = max(peak, rss_kib(pid))
        stat = await stack.comet_stat()
        print(f"\nslow readers: online per push went {online[0]} -> {online[-1]} (first 0 at push "
              f"{online.index(0) if 0 in online else None}); comet RSS {rss_before} KiB -> peak {peak} KiB "
              f"(+{peak - rss_before} KiB for a flood of {2 * FLOOD * BIG // 1024} KiB); closes {stat['closes']}; "
              f"slowest message to the other key {slowest:.3f}s")
        record_property("rss_growth_kib", peak - rss_before)
        record_property("fast_key_slowest_s", slowest)
        assert stat["queue_overflows"] == 2 and stat["closes"].get("queue overflow") == 2, stat
        assert stat["connections"] == {"tcp": 1, "ws": 1}, stat
        assert online[0] == 2 and online[-1] == 0
        assert peak - rss_before < RSS_BOUND_KIB, f"the comet buffered the flood: +{peak - rss_before} KiB"
        for sock in slow:   # the comet dropped them: what is left to read ends with EOF or a reset
            assert await drained(sock)
        log = stack.comet.log()
        assert log.count("closing the slow connection") == 2, log[-2000:]
    finally:
        for sock in slow:
            sock.close()
        await fast_tcp.close()
        await fast_ws.close()
        await comet.close()
    assert tracebacks(stack.processes()) == {}


async def _round_trip(comet: CometClient, tcp: TcpSubscriber, ws: Any, n: int) -> float:
    """Push a small message to the other key; seconds until both of its subscribers have it."""
    started = time.monotonic()
    mid = (await comet.push_private("fast", json.dumps({"n": n}).encode(), 0)).mid
    assert json.loads(await asyncio.wait_for(tcp.frame(), FAST_BOUND))["mid"] == mid
    assert json.loads(await asyncio.wait_for(ws.recv(), FAST_BOUND))["mid"] == mid
    return time.monotonic() - started


def _split(address: str) -> tuple[str, int]:
    host, port = address.rsplit(":", 1)
    return host, int(port)


# -- slowloris -------------------------------------------------------------------------------------------------

@pytest.fixture
async def stack(redis_url: str) -> AsyncIterator[InProcessStack]:
    stack = InProcessStack(redis_url, comet_limits={"first_packet_timeout": FIRST_PACKET, "timer_tick": TICK},
                           web_limits={"idle_timeout": WEB_TIMEOUT, "body_timeout": WEB_TIMEOUT})
    try:
        await stack.start()
        yield stack
    finally:
        await stack.close()


RPC_FRAME_START = encode_request(7, "MessageRPC.Ping", [])[:3] + b"\xd9\xff"   # [0, 7, <str of 255 bytes...>


async def _serves_tcp(stack: InProcessStack) -> None:
    await (await TcpSubscriber.connect(_split(stack.tcp), "other")).close()


async def _serves_ws(stack: InProcessStack) -> None:
    await (await ws_subscribe(f"ws://{stack.ws}", "other")).close()


async def _serves_public(stack: InProcessStack) -> None:
    assert (await stack.get("/1/time/get", {}))["ret"] == 0


async def _serves_admin(stack: InProcessStack) -> None:
    assert (await stack.push("other", {"n": 1}, 0))[0] == 0


def _serves_rpc(address: Callable[[InProcessStack], str], method: str) -> Callable[[InProcessStack], Awaitable[None]]:
    async def ping(stack: InProcessStack) -> None:
        client = RpcClient(address(stack), timeout=5)
        try:
            assert await client.call(method) == "pong"
        finally:
            await client.close()
    return ping


LISTENERS: dict[str, tuple[Callable[[InProcessStack], str], bytes, bytes, float,
                           Callable[[InProcessStack], Awaitable[None]]]] = {
    # name: (address, prefix, trickle, documented timeout, a normal request on the same listener)
    "comet-tcp-silent": (lambda s: s.tcp, b"", b"", FIRST_PACKET, _serves_tcp),
    "comet-tcp-trickle": (lambda s: s.tcp, b"*3\r\n$3\r\nsub\r\n$4000\r\n", b"k", FIRST_PACKET, _serves_tcp),
    "comet-ws-trickle": (lambda s: s.ws, b"GET /sub?key=k&heartbeat=30 HTTP/1.1\r\nHost: x\r\n", b"X-Pad: a\r\n",
                         FIRST_PACKET, _serves_ws),
    "web-public-trickle": (lambda s: s.public[7:], b"GET /1/time/get HTTP/1.1\r\nHost: x\r\n", b"X-Pad: a\r\n",
                           WEB_TIMEOUT, _serves_public),
    "web-admin-trickle": (lambda s: s.admin[7:], b"POST /push/private?key=k&expire=0 HTTP/1.1\r\nHost: x\r\n",
                          b"X-Pad: a\r\n", WEB_TIMEOUT, _serves_admin),
    "web-admin-slow-body": (lambda s: s.admin[7:], b"POST /push/private?key=k&expire=0 HTTP/1.1\r\nHost: x\r\n"
                            b"Content-Length: 60000\r\n\r\n", b"{", WEB_TIMEOUT, _serves_admin),
}


@pytest.mark.parametrize("listener", list(LISTENERS))
async def test_slowloris_is_closed_within_the_documented_timeout(stack: InProcessStack, listener: str) -> None:
    await _slowloris(stack, listener, *LISTENERS[listener])


RPC_LISTENERS: dict[str, tuple[Callable[[InProcessStack], str], str]] = {
    "comet-rpc": (lambda s: s.comet_rpc, "CometRPC.Ping"), "message-rpc": (lambda s: s.message_rpc, "MessageRPC.Ping")}


async def test_slowloris_on_the_rpc_listeners_is_closed(stack: InProcessStack) -> None:
    await asyncio.gather(*(_slowloris(stack, name, address, RPC_FRAME_START, b"a", RPC_FRAME_TIMEOUT,
                                      _serves_rpc(address, ping)) for name, (address, ping) in RPC_LISTENERS.items()))


async def _slowloris(stack: InProcessStack, name: str, address: Callable[[InProcessStack], str], prefix: bytes,
                     trickle: bytes, timeout: float, serves: Callable[[InProcessStack], Awaitable[None]]) -> None:
    bound = timeout + 2 * TICK + SLACK
    holds = [asyncio.ensure_future(hold(address(stack), prefix, trickle, bound)) for _ in range(LORIS)]
    try:
        await asyncio.sleep(0.3)
        await asyncio.wait_for(serves(stack), 5)   # the listener serves others while the slowloris connections wait
        results = await asyncio.gather(*holds)
    finally:
        for task in holds:
            task.cancel()
        await asyncio.gather(*holds, return_exceptions=True)
    closed_after = [after for after, _sent in results]
    print(f"\n{name}: {LORIS} slowloris connections closed after "
          f"{[None if after is None else round(after, 2) for after in closed_after]} s (timeout {timeout}s)")
    assert None not in closed_after, \
        f"{name}: {closed_after.count(None)} of {LORIS} still open {bound:.1f}s later ({closed_after})"
    # closed by the timeout, silently, not refused early by a parser (which would not test the timeout)
    assert all(after is not None and after >= timeout * 0.9 for after in closed_after), closed_after
    assert all(sent == b"" for _after, sent in results), results
    await asyncio.wait_for(serves(stack), 5)       # and afterwards
