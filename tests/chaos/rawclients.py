"""Raw-socket clients that misbehave on purpose: subscribers that stop reading, and slowloris connections that
never finish their first request. Non-blocking sockets on the test's event loop; every wait is bounded.
"""
from __future__ import annotations

import asyncio
import socket
import time

from tests.integration.conftest import sub_command

WS_KEY_HEADER = b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"


async def raw_socket(address: str) -> socket.socket:
    """A connected non-blocking socket with a small receive buffer (set before connecting, so it sticks)."""
    host, port = address.rsplit(":", 1)
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    sock.setblocking(False)
    try:
        await asyncio.wait_for(asyncio.get_running_loop().sock_connect(sock, (host, int(port))), 5)
    except BaseException:
        sock.close()
        raise
    return sock


async def read_until(sock: socket.socket, marker: bytes) -> bytes:
    """Read a byte at a time (so nothing after ``marker`` is taken from the kernel) up to ``marker``."""
    loop, data = asyncio.get_running_loop(), b""
    while marker not in data:
        chunk = await asyncio.wait_for(loop.sock_recv(sock, 1), 5)
        assert chunk, f"closed before {marker!r}: {data!r}"
        data += chunk
    return data


async def stalled_tcp(address: str, key: str) -> socket.socket:
    """A TCP subscriber of ``key`` that reads its ``+h`` and then nothing more."""
    sock = await raw_socket(address)
    await asyncio.get_running_loop().sock_sendall(sock, sub_command(key, version="1.0"))
    assert (await read_until(sock, b"\r\n")) == b"+h\r\n"
    return sock


async def stalled_ws(address: str, key: str) -> socket.socket:
    """A WebSocket subscriber of ``key`` that reads the 101 and the ``+h`` frame and then nothing more."""
    sock = await raw_socket(address)
    request = (f"GET /sub?key={key}&heartbeat=30&ver=1.0 HTTP/1.1\r\nHost: {address}\r\nUpgrade: websocket\r\n"
               "Connection: Upgrade\r\nSec-WebSocket-Version: 13\r\n").encode() + WS_KEY_HEADER + b"\r\n"
    await asyncio.get_running_loop().sock_sendall(sock, request)
    head = await read_until(sock, b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 101"), head
    assert (await read_until(sock, b"+h\r\n")).endswith(b"\x81\x04+h\r\n")
    return sock


async def drained(sock: socket.socket) -> bool:
    """Read what is left until the server's EOF or reset (True); each read bounded."""
    loop = asyncio.get_running_loop()
    try:
        while await asyncio.wait_for(loop.sock_recv(sock, 1 << 16), 5):
            pass
    except (ConnectionResetError, BrokenPipeError):
        pass
    return True


async def hold(address: str, prefix: bytes, trickle: bytes, bound: float) -> tuple[float | None, bytes]:
    """Connect, send ``prefix``, then one byte of ``trickle`` (cycled, so the request never completes) every
    0.1 s; the seconds until the server closed the connection (None if it was still open after ``bound``) and
    what the server sent before closing."""
    loop = asyncio.get_running_loop()
    host, port = address.rsplit(":", 1)
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setblocking(False)
    try:
        await asyncio.wait_for(loop.sock_connect(sock, (host, int(port))), 5)
        started = time.monotonic()
        received = bytearray()
        closed = asyncio.ensure_future(_closed(sock, received))
        try:
            if prefix:
                await loop.sock_sendall(sock, prefix)
            sent = 0
            while time.monotonic() - started < bound:
                done, _ = await asyncio.wait({closed}, timeout=0.1)
                if done:
                    return time.monotonic() - started, bytes(received)
                if trickle:
                    try:
                        await loop.sock_sendall(sock, trickle[sent % len(trickle):][:1])
                    except OSError:
                        await asyncio.wait_for(closed, 5)
                        return time.monotonic() - started, bytes(received)
                    sent += 1
            return None, bytes(received)
        finally:
            closed.cancel()
            await asyncio.gather(closed, return_exceptions=True)
    finally:
        sock.close()


async def _closed(sock: socket.socket, received: bytearray) -> None:
    loop = asyncio.get_running_loop()
    try:
        while data := await loop.sock_recv(sock, 4096):
            received += data
    except OSError:
        pass
