"""Helpers shared by the tests: free loopback ports and waiting for a condition."""
from __future__ import annotations

import asyncio
import os
import random
import socket
import time
from typing import Awaitable, Callable


# Ports handed out come from below Linux's ephemeral range (32768-60999 by default): a port from bind(0) is an
# ephemeral one, which any outgoing connection of the test run (a client, a node calling another) may take between
# free_port() and the server's bind ("address already in use", seen under load). 18000-32767 holds no default
# port of ours (pushcluster cluster uses 17000-17999).
_PORT_RANGE = (18000, 32767)
_handed_out: set[int] = set()
_rng = random.Random(os.getpid() ^ time.time_ns())


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port that is free on `host` right now (bound and released), never handed out before in this process."""
    for _ in range(200):
        port = _rng.randint(*_PORT_RANGE)
        if port in _handed_out:
            continue
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
            try:
                sock.bind((host, port))
            except OSError:
                continue
        _handed_out.add(port)
        return port
    raise RuntimeError(f"no free port in {_PORT_RANGE} on {host}")


def wait_port(host: str, port: int, timeout: float = 10.0) -> None:
    """Block until something accepts TCP connections on host:port."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            with socket.create_connection((host, port), timeout=0.5):
                return
        except OSError:
            if time.monotonic() > deadline:
                raise TimeoutError(f"nothing listens on {host}:{port} after {timeout}s")
            time.sleep(0.02)


async def eventually(check: Callable[[], bool | Awaitable[bool]], timeout: float = 5.0) -> None:
    """Await until `check()` is true, polling every 10 ms; fail the test after `timeout`."""
    deadline = time.monotonic() + timeout
    while True:
        result = check()
        if not isinstance(result, bool):
            result = await result
        if result:
            return
        if time.monotonic() > deadline:
            raise AssertionError("condition not met in time")
        await asyncio.sleep(0.01)
