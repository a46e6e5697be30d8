"""A raw asyncio HTTP/1.1 keep-alive load client: closed loop (N connections back to back) or open loop (paced).

Why not httpx: on this machine httpx's AsyncClient costs several times more CPU per request than the servers
under test (see docs/benchmarks.md), so it would measure itself. Each connection here is one
``asyncio.Protocol`` that writes prebuilt request bytes and parses the status line, ``Content-Length`` and body;
that is all the servers under test send (tornado always sets Content-Length on a finished response).

Requests come from a :class:`RequestMaker`: a path template with ``{key}`` and ``{expire}``, keys taken round-robin,
and a body kind: ``none``, ``stamp`` (``{"t":<monotonic ns>,"s":<seq>}``, the push-to-receive clock of the
subscribers) or ``multi`` (the mprivate document ``{"m": "<stamp JSON>", "k": "k1,k2,..."}`` with
``group`` keys per request). ``"ret":0`` in the reply (and, for ``multi``, an empty ``fk``) counts as success.
"""
from __future__ import annotations

import asyncio
import json
import time
from typing import Any, cast

OK_MARK = b'"ret":0'


class HttpConn(asyncio.Protocol):
    """One keep-alive connection carrying one request at a time."""

    __slots__ = ("transport", "buf", "waiter")

    def __init__(self) -> None:
        self.transport: asyncio.Transport | None = None
        self.buf = b""
        self.waiter: asyncio.Future[tuple[int, bytes]] | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)  # uvloop's transports are not asyncio subclasses

    def request(self, data: bytes) -> asyncio.Future[tuple[int, bytes]]:
        if self.transport is None:
            raise ConnectionResetError("connection closed")
        self.waiter = asyncio.get_running_loop().create_future()
        self.transport.write(data)
        return self.waiter

    def data_received(self, data: bytes) -> None:
        buf = self.buf + data if self.buf else data
        end = buf.find(b"\r\n\r\n")
        if end < 0:
            self.buf = buf
            return
        head = buf[:end].lower()
        length = 0
        mark = head.find(b"\r\ncontent-length:")
        if mark >= 0:
            stop = head.find(b"\r\n", mark + 2)
            length = int(head[mark + 17:stop if stop >= 0 else len(head)])
        if len(buf) < end + 4 + length:
            self.buf = buf
            return
        self.buf = buf[end + 4 + length:]
        waiter, self.waiter = self.waiter, None
        if waiter is not None and not waiter.done():
            waiter.set_result((int(buf[9:12]), buf[end + 4:end + 4 + length]))

    def connection_lost(self, exc: Exception | None) -> None:
        self.transport = None
        waiter, self.waiter = self.waiter, None
        if waiter is not None and not waiter.done():
            waiter.set_exception(ConnectionResetError("connection lost"))


class RequestMaker:
    """Builds the next request of a load run (see the module docstring)."""

    def __init__(self, spec: dict[str, Any], host: str, port: int) -> None:
        self.method: str = spec.get("method", "GET")
        self.path: str = spec["path"]
        self.body_kind: str = spec.get("body", "none")
        self.keys: list[str] = spec.get("keys") or ["k"]
        self.group: int = spec.get("group", 1)
        self.expire: int = spec.get("expire", 600)
        self.offset: int = spec.get("offset", 0)  # where in ``keys`` this worker starts (workers start apart)
        self.head = f"Host: {host}:{port}\r\n".encode()
        self.seq = 0

    def keys_per_request(self) -> int:
        return self.group if self.body_kind == "multi" else 1

    def make(self, stamp_ns: int) -> bytes:
        self.seq += 1
        if self.body_kind == "multi":
            start = (self.offset + self.seq * self.group) % len(self.keys)
            keys = (self.keys + self.keys)[start:start + self.group]
            body = json.dumps({"m": '{"t":%d,"s":%d}' % (stamp_ns, self.seq), "k": ",".join(keys)}).encode()
            path = self.path.format(key="", expire=self.expire)
        else:
            key = self.keys[(self.offset + self.seq) % len(self.keys)]
            path = self.path.format(key=key, expire=self.expire)
            body = b'{"t":%d,"s":%d}' % (stamp_ns, self.seq) if self.body_kind == "stamp" else b""
        if self.method == "GET":
            return b"GET %s HTTP/1.1\r\n%s\r\n" % (path.encode(), self.head)
        return b"%s %s HTTP/1.1\r\n%sContent-Length: %d\r\n\r\n%s" % (
            self.method.encode(), path.encode(), self.head, len(body), body)

    def succeeded(self, status: int, body: bytes) -> int:
        """Keys pushed/served by this reply (0 on failure)."""
        if status != 200 or OK_MARK not in body:
            return 0
        if self.body_kind != "multi":
            return 1
        failed = json.loads(body).get("data", {}).get("fk", [])
        return self.group - len(failed)


class LoadRun:
    """One run's results: replies completed inside the window [start + warmup, start + warmup + duration],
    and the latency (ns, reply time - stamp) of every request stamped inside the window."""

    def __init__(self, maker: RequestMaker, window_start_ns: int, window_end_ns: int) -> None:
        self.maker = maker
        self.window = (window_start_ns, window_end_ns)
        self.done = 0
        self.keys_ok = 0
        self.errors = 0
        self.replies_ok = 0  # successful replies at any time (warm-up and drain included): messages sent
        self.latency_ns: list[int] = []
        self.lag_ns: list[int] = []

    async def one(self, conn: HttpConn, stamp_ns: int) -> None:
        data = self.maker.make(stamp_ns)
        try:
            status, body = await conn.request(data)
        except ConnectionError:
            self.errors += 1
            return
        now = time.monotonic_ns()
        ok = self.maker.succeeded(status, body)
        self.replies_ok += ok
        if self.window[0] <= now <= self.window[1]:
            self.done += 1
            self.keys_ok += ok
            if not ok:
                self.errors += 1
        if stamp_ns >= self.window[0] and len(self.latency_ns) < 200_000:
            self.latency_ns.append(now - stamp_ns)

    def result(self, seconds: float, cpu: float, unfinished: int = 0) -> dict[str, Any]:
        return {"done": self.done, "keys_ok": self.keys_ok, "errors": self.errors, "seconds": seconds,
                "replies_ok": self.replies_ok,
                "latency_ns": self.latency_ns, "lag_ns": self.lag_ns, "cpu_seconds": cpu, "unfinished": unfinished}


async def _connect(host: str, port: int, count: int) -> list[HttpConn]:
    loop = asyncio.get_running_loop()
    conns = []
    for _ in range(count):
        _, conn = await loop.create_connection(HttpConn, host, port)
        conns.append(conn)
    return conns


def _close(pool: list[HttpConn]) -> None:
    for conn in pool:
        if conn.transport is not None:
            conn.transport.close()


async def closed_loop(spec: dict[str, Any], host: str, port: int, conns: int, warmup: float,
                      duration: float) -> dict[str, Any]:
    """``conns`` connections, each sending its next request when the previous reply arrived."""
    pool = await _connect(host, port, conns)
    start = time.monotonic_ns()
    window = (start + int(warmup * 1e9), start + int((warmup + duration) * 1e9))
    run = LoadRun(RequestMaker(spec, host, port), *window)
    cpu0 = 0.0

    async def loop_one(conn: HttpConn) -> None:
        while time.monotonic_ns() < window[1] and conn.transport is not None:
            await run.one(conn, time.monotonic_ns())

    async def cpu_mark() -> None:
        nonlocal cpu0
        await asyncio.sleep(warmup)
        cpu0 = time.process_time()

    await asyncio.gather(cpu_mark(), *(loop_one(conn) for conn in pool))
    cpu = time.process_time() - cpu0
    _close(pool)
    return run.result(duration, cpu)


async def open_loop(spec: dict[str, Any], host: str, port: int, conns: int, rate: float, warmup: float,
                    duration: float, drain: float = 3.0) -> dict[str, Any]:
    """Requests at ``rate``/s on a fixed schedule over ``conns`` connections; each request carries its scheduled
    time, so a server that falls behind is charged for the wait (no coordinated omission). Requests still
    unanswered ``drain`` seconds after the schedule ended are abandoned and reported as ``unfinished``."""
    pool = await _connect(host, port, conns)
    start = time.monotonic_ns()
    window = (start + int(warmup * 1e9), start + int((warmup + duration) * 1e9))
    run = LoadRun(RequestMaker(spec, host, port), *window)
    due: asyncio.Queue[int] = asyncio.Queue()
    total = int(rate * (warmup + duration))
    sent = 0
    cpu0 = 0.0

    async def sender(conn: HttpConn) -> None:
        nonlocal sent
        while True:
            stamp = await due.get()
            if stamp >= window[0] and len(run.lag_ns) < 200_000:
                run.lag_ns.append(time.monotonic_ns() - stamp)
            sent += 1
            await run.one(conn, stamp)

    senders = [asyncio.ensure_future(sender(conn)) for conn in pool]
    for index in range(total):
        stamp = start + int(index * 1e9 / rate)
        wait = (stamp - time.monotonic_ns()) / 1e9
        if wait > 0.0005:
            await asyncio.sleep(wait)
        if not cpu0 and stamp >= window[0]:
            cpu0 = time.process_time()
        due.put_nowait(stamp)
    cpu = time.process_time() - cpu0
    drain_end = time.monotonic() + drain
    while (due.qsize() or any(conn.waiter is not None for conn in pool)) and time.monotonic() < drain_end:
        await asyncio.sleep(0.005)
    for task in senders:
        task.cancel()
    await asyncio.gather(*senders, return_exceptions=True)
    _close(pool)
    return run.result(duration, cpu, unfinished=total - sent + sum(1 for c in pool if c.waiter is not None))


async def httpx_closed_loop(spec: dict[str, Any], host: str, port: int, conns: int, warmup: float,
                            duration: float) -> dict[str, Any]:
    """The same closed loop through ``httpx.AsyncClient`` (GET specs only), to compare the clients' cost."""
    import httpx

    maker = RequestMaker(spec, host, port)
    start = time.monotonic_ns()
    window = (start + int(warmup * 1e9), start + int((warmup + duration) * 1e9))
    run = LoadRun(maker, *window)
    limits = httpx.Limits(max_connections=conns, max_keepalive_connections=conns)
    cpu0 = 0.0
    async with httpx.AsyncClient(base_url=f"http://{host}:{port}", limits=limits, timeout=30.0) as client:

        async def loop_one() -> None:
            while time.monotonic_ns() < window[1]:
                maker.seq += 1
                key = maker.keys[(maker.offset + maker.seq) % len(maker.keys)]
                stamp = time.monotonic_ns()
                reply = await client.get(maker.path.format(key=key, expire=maker.expire))
                now = time.monotonic_ns()
                ok = maker.succeeded(reply.status_code, reply.content)
                if window[0] <= now <= window[1]:
                    run.done += 1
                    run.errors += 0 if ok else 1
                    run.latency_ns.append(now - stamp)

        async def cpu_mark() -> None:
            nonlocal cpu0
            await asyncio.sleep(warmup)
            cpu0 = time.process_time()

        await asyncio.gather(cpu_mark(), *(loop_one() for _ in range(conns)))
    return run.result(duration, time.process_time() - cpu0)
