"""The subscribers of one load-generator process: open them fast and bounded, heartbeat them, close them.

Connections are opened by ``concurrency`` runner coroutines (no task per connection), each bound to one of
several loopback source addresses (127.0.0.2, 127.0.0.3, ...): every source address has its own ephemeral port
range (about 28,000 ports here), so ports never run out. ``loop.create_connection(local_addr=(source, 0))`` costs
the client about half the CPU of a socket made, bound (with IP_BIND_ADDRESS_NO_PORT) and connected from Python;
its ``bind(port 0)`` gets slow on an address whose ports are still in TIME_WAIT, which is why every open takes
fresh source addresses (``loadgen.take_sources``).
"""
from __future__ import annotations

import asyncio
import time
from collections import Counter
from typing import Any, Callable

from benchmarks.subclient import RECORDER, Subscriber, TcpSubscriber, WsSubscriber, tcp_subscribe_command

HANDSHAKE_TIMEOUT = 15.0
Target = tuple[str, str, int]  # (proto "tcp" | "ws", host, port)


class Fleet:
    """Every subscriber this process holds."""

    def __init__(self) -> None:
        self.subs: list[Subscriber] = []
        self._heartbeat: asyncio.Task[None] | None = None

    @property
    def open_count(self) -> int:
        return sum(1 for sub in self.subs if sub.transport is not None)

    async def _open_one(self, proto: str, host: str, port: int, key: str, heartbeat: int, source: str) -> Subscriber:
        loop = asyncio.get_running_loop()
        waiter: asyncio.Future[None] = loop.create_future()
        sub: Subscriber
        if proto == "tcp":
            sub = TcpSubscriber(waiter, tcp_subscribe_command(key, heartbeat))
        else:
            sub = WsSubscriber(waiter, host, port, key, heartbeat)
        await loop.create_connection(lambda: sub, host, port, local_addr=(source, 0))
        try:
            await asyncio.wait_for(waiter, HANDSHAKE_TIMEOUT)
        except BaseException:
            sub.close()
            raise
        return sub

    async def open(self, targets: list[Target], keys: list[str], sources: list[str], heartbeat: int,
                   concurrency: int, timeout: float, progress: Callable[[int], None]) -> dict[str, Any]:
        """Open ``len(keys)`` subscribers (connection i uses ``targets[i % len]``); return counts and timings."""
        loop = asyncio.get_running_loop()
        errors: Counter[str] = Counter()
        next_index = 0
        opened = 0
        start = time.monotonic_ns()
        cpu = time.process_time()
        last_ok = start
        deadline = loop.time() + timeout
        handshake_ns: list[int] = []

        async def runner() -> None:
            nonlocal next_index, opened, last_ok
            while next_index < len(keys) and loop.time() < deadline:
                index = next_index
                next_index += 1
                proto, host, port = targets[index % len(targets)]
                began = time.monotonic_ns()
                try:
                    sub = await self._open_one(proto, host, port, keys[index], heartbeat,
                                               sources[index % len(sources)])
                except (OSError, asyncio.TimeoutError) as exc:
                    errors[f"{proto}: {exc.__class__.__name__}: {str(exc)[:60]}"] += 1
                    continue
                last_ok = time.monotonic_ns()
                if len(handshake_ns) < 50_000:
                    handshake_ns.append(last_ok - began)
                self.subs.append(sub)
                opened += 1
                if opened % 250 == 0:
                    progress(250)

        await asyncio.gather(*(runner() for _ in range(max(1, min(concurrency, len(keys))))))
        progress(opened % 250)
        return {"opened": opened, "failed": sum(errors.values()), "errors": dict(errors.most_common(5)),
                "start_ns": start, "last_ok_ns": last_ok, "handshake_ns": handshake_ns,
                "cpu_percent": 100 * (time.process_time() - cpu) / max(1e-9, (time.monotonic_ns() - start) / 1e9)}

    def start_heartbeats(self, period: float) -> None:
        """Send ``h`` on every connection each ``period`` seconds (spread over the period) until closed."""
        if self._heartbeat is None:
            self._heartbeat = asyncio.ensure_future(self._beat(period))

    async def _beat(self, period: float, slices: int = 50) -> None:
        while True:
            subs = list(self.subs)
            for index in range(slices):
                await asyncio.sleep(period / slices)
                for sub in subs[index::slices]:
                    sub.heartbeat()

    async def close_all(self, timeout: float = 5.0) -> int:
        """Close every subscriber; return how many were still open (i.e. held until now)."""
        if self._heartbeat is not None:
            self._heartbeat.cancel()
            self._heartbeat = None
        held = self.open_count
        for sub in self.subs:
            sub.close()
        self.subs = []
        await asyncio.sleep(min(timeout, 0.2))  # let the transports finish closing
        return held

    def status(self) -> dict[str, Any]:
        return {"open": self.open_count, "lost": RECORDER.lost, "refused": RECORDER.refused}
