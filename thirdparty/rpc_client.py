"""MessagePack-RPC client: pipelined calls over one connection, per-call timeouts, redial with backoff.

:Status: used by ``message/client.py`` and ``comet/client.py``.

The client dials lazily on the first call; concurrent callers share that one attempt. Calls are pipelined over
the connection and matched to their replies by msgid. The connection is a plain asyncio protocol: replies are
decoded in its ``data_received`` and hand their result straight to the waiting caller (no reader coroutine, no
IOStream), and requests go out through :class:`thirdparty.rpc_stream.FrameWriter`. Every call is bounded: the
dial by ``connect_timeout`` and the reply by ``timeout``, so a caller never hangs.

Failures, as the edge sees them:

* :class:`RemoteError` (code, message): the server answered with an error reply.
* :class:`RpcUnavailable`: the node cannot be reached: refused, unreachable, connection lost (every call pending
  on that connection fails at once), or still in backoff after a failed dial.
* :class:`RpcTimeout` (a subclass of RpcUnavailable): no reply within the call's timeout; the call is forgotten
  and a late reply is dropped.
* ``RemoteError(65534, ...)`` without anything sent: params msgpack cannot encode, or a request larger than
  ``max_frame_size`` (the server would drop the connection for it).

After a failed dial, calls fail fast with RpcUnavailable until a backoff has passed (``backoff_base`` doubled per
consecutive failure up to ``backoff_max``, with jitter); then one caller's call dials again. A lost connection is
redialled at once by the next call.

Every call that was sent is timed into ``thirdparty.metrics.RPC_CALL_LATENCY`` (by method; ``/metrics``).
"""
from __future__ import annotations

import asyncio
import logging
import random
import socket
import time
from typing import Any, Callable, cast

from thirdparty.confload import parse_address
from thirdparty.metrics import rpc_latency
from thirdparty.rpc_codec import (
    DEFAULT_MAX_FRAME_SIZE, ERR_INTERNAL, ERR_PARAM, MAX_MSGID, Decoder, Response, RpcProtocolError, encode_notify,
    encode_request,
)
from thirdparty.rpc_stream import FrameWriter

log = logging.getLogger(__name__)


class RpcUnavailable(Exception):
    """The node cannot be reached: connect refused or timed out, connection lost, in backoff, client closed."""


class RpcTimeout(RpcUnavailable):
    """No reply within the call's timeout."""


class RemoteError(Exception):
    """The server answered with an error reply ``[code, message]``."""

    def __init__(self, code: int, message: str) -> None:
        super().__init__(code, message)
        self.code = code
        self.message = message

    def __str__(self) -> str:
        return f"[{self.code}] {self.message}"


def backoff_delay(failures: int, *, base: float, maximum: float, jitter: float) -> float:
    """Seconds to wait after ``failures`` consecutive failed dials; ``jitter`` in [0, 1) trims up to half.

    ``min(maximum, base * 2 ** (failures - 1))`` scaled into ``[0.5, 1.0)`` of itself ("equal jitter"), so
    that clients that lost the same node do not all redial at the same instant.
    """
    if failures < 1:
        return 0.0
    ceiling = min(maximum, base * 2.0 ** min(failures - 1, 62))
    return ceiling * (1.0 - jitter / 2.0)


def _remote_error(error: Any) -> RemoteError:
    if (isinstance(error, (list, tuple)) and len(error) == 2 and isinstance(error[0], int)
            and not isinstance(error[0], bool) and isinstance(error[1], str)):
        return RemoteError(error[0], error[1])
    return RemoteError(ERR_INTERNAL, f"unrecognised error reply: {error!r:.200}")


class _Connection(asyncio.Protocol):
    """One TCP connection: the calls waiting on it, matched to replies as they are decoded."""

    def __init__(self, address: str, max_frame_size: int, loop: asyncio.AbstractEventLoop) -> None:
        self.address = address
        self.pending: dict[int, asyncio.Future[Response]] = {}
        self.loop = loop
        self.writer: FrameWriter | None = None
        self._transport: asyncio.Transport | None = None
        self._decoder = Decoder(max_frame_size)
        self._next_msgid = 0
        self._reason = "connection lost"
        self._lost: asyncio.Future[None] = loop.create_future()

    @property
    def closed(self) -> bool:
        return self._transport is None or self._transport.is_closing()

    def next_msgid(self) -> int:
        while True:
            msgid = self._next_msgid
            self._next_msgid = 0 if msgid == MAX_MSGID else msgid + 1
            if msgid not in self.pending:
                return msgid

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        transport = cast(asyncio.Transport, transport)  # uvloop's transports are not registered subclasses
        self._transport = transport
        self.writer = FrameWriter(transport, self.loop)
        sock = transport.get_extra_info("socket")
        if sock is not None and sock.family in (socket.AF_INET, socket.AF_INET6):
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def data_received(self, data: bytes) -> None:
        try:
            frames = self._decoder.feed(data)
        except RpcProtocolError as exc:
            self._reason = f"protocol error: {exc}"
            log.warning("rpc=%s: %s; closing the connection", self.address, self._reason)
            self.abort()
            return
        pending = self.pending
        for frame in frames:
            if not isinstance(frame, Response):
                log.warning("rpc=%s: unexpected %s frame from the server, ignored", self.address, type(frame).__name__)
                continue
            waiter = pending.pop(frame.msgid, None)
            if waiter is None:
                log.debug("rpc=%s msgid=%d: reply after the call gave up, dropped", self.address, frame.msgid)
            elif not waiter.done():
                waiter.set_result(frame)

    def connection_lost(self, exc: Exception | None) -> None:
        self.fail_pending(self._reason)
        if not self._lost.done():
            self._lost.set_result(None)

    def fail_pending(self, reason: str) -> None:
        pending, self.pending = self.pending, {}
        if pending:
            log.warning("rpc=%s: %s, failing %d pending calls", self.address, reason, len(pending))
        for waiter in pending.values():
            if not waiter.done():
                waiter.set_exception(RpcUnavailable(f"{self.address}: {reason}"))

    def abort(self) -> None:
        if self._transport is not None:
            self._transport.abort()

    async def close(self) -> None:
        """Close now (what is not sent is dropped) and wait until the connection is gone."""
        if self._transport is None:
            return
        self._transport.abort()
        await self._lost


class RpcClient:
    """A MessagePack-RPC client for one node address ``host:port``."""

    def __init__(self, address: str, *, timeout: float = 3.0, connect_timeout: float = 1.0,
                 max_frame_size: int = DEFAULT_MAX_FRAME_SIZE, backoff_base: float = 0.05,
                 backoff_max: float = 2.0, clock: Callable[[], float] = time.monotonic,
                 jitter: Callable[[], float] = random.random) -> None:
        self._host, self._port = parse_address(address)  # ConfigError is a ValueError
        if timeout <= 0 or connect_timeout <= 0:
            raise ValueError("timeout and connect_timeout must be > 0")
        self._address = address
        self.timeout = timeout
        self.connect_timeout = connect_timeout
        self.max_frame_size = max_frame_size
        self.backoff_base = backoff_base
        self.backoff_max = backoff_max
        self._clock = clock
        self._jitter = jitter
        self._conn: _Connection | None = None
        self._dialing: asyncio.Task[_Connection] | None = None
        self._failures = 0
        self._retry_at = 0.0
        self._closed = False

    @property
    def address(self) -> str:
        return self._address

    @property
    def connected(self) -> bool:
        return self._conn is not None and not self._conn.closed

    @property
    def pending_count(self) -> int:
        """Calls waiting for a reply on the current connection."""
        return len(self._conn.pending) if self._conn is not None else 0

    def __repr__(self) -> str:
        return f"RpcClient({self._address!r})"

    async def call(self, method: str, *params: Any, timeout: float | None = None) -> Any:
        """Call ``method`` with positional ``params``; return its result or raise (see the module docstring)."""
        conn = self._conn
        if conn is None or conn.closed or self._closed:
            conn = await self._connection()
        writer = conn.writer
        assert writer is not None, "connection_made has run"
        msgid = conn.next_msgid()
        data = self._encode(encode_request, msgid, method, params)
        loop = conn.loop
        waiter: asyncio.Future[Response] = loop.create_future()
        conn.pending[msgid] = waiter
        # A timer on the waiter itself: cheaper per call than asyncio.timeout(), which re-schedules and
        # cancels the calling task.
        timer = loop.call_later(self.timeout if timeout is None else timeout, _expire, waiter)
        started = time.perf_counter()
        try:
            writer.write(data)
            response = await waiter
        except ConnectionError:
            raise RpcUnavailable(f"{self._address}: connection lost") from None
        except _Expired:
            log.warning("rpc=%s msgid=%d method=%s: no reply in time", self._address, msgid, method)
            raise RpcTimeout(f"{self._address}: {method} timed out") from None
        finally:
            timer.cancel()
            if conn.pending.get(msgid) is waiter:
                del conn.pending[msgid]
            rpc_latency(method).observe(time.perf_counter() - started)  # about 0.3 us (thirdparty/metrics.py)
        if response.error is not None:
            raise _remote_error(response.error)
        return response.result

    async def notify(self, method: str, *params: Any) -> None:
        """Send a notification: no reply, no delivery guarantee beyond the write."""
        data = self._encode(encode_notify, method, params)
        conn = await self._connection()
        try:
            if conn.writer is None:
                raise ConnectionResetError("not connected")
            conn.writer.write(data)
        except ConnectionError:
            raise RpcUnavailable(f"{self._address}: connection lost") from None

    async def close(self) -> None:
        """Close the connection; pending and later calls fail with RpcUnavailable."""
        self._closed = True
        dialing = self._dialing
        if dialing is not None:
            # Not cancelled: a dial ends within connect_timeout and then closes its stream itself.
            await asyncio.gather(dialing, return_exceptions=True)
        conn, self._conn = self._conn, None
        if conn is not None:
            conn.fail_pending("client closed")
            await conn.close()

    def _encode(self, encoder: Callable[..., bytes], *args: Any) -> bytes:
        try:
            data = encoder(*args)
        except (TypeError, ValueError, OverflowError) as exc:
            raise RemoteError(ERR_PARAM, f"params cannot be encoded as msgpack: {exc}") from None
        if len(data) > self.max_frame_size:
            raise RemoteError(ERR_PARAM, f"request of {len(data)} bytes exceeds max_frame_size {self.max_frame_size}")
        return data

    async def _connection(self) -> _Connection:
        if self._closed:
            raise RpcUnavailable(f"{self._address}: client closed")
        if self._conn is not None and not self._conn.closed:
            return self._conn
        if self._dialing is None:
            wait = self._retry_at - self._clock()
            if wait > 0:
                raise RpcUnavailable(f"{self._address}: unreachable, next dial in {wait:.2f}s")
            self._dialing = asyncio.create_task(self._dial())
            # The dial's error reaches every waiting caller; if they were all cancelled, nobody else needs it.
            self._dialing.add_done_callback(lambda task: task.cancelled() or task.exception())
        dialing = self._dialing
        return await asyncio.shield(dialing)

    async def _dial(self) -> _Connection:
        loop = asyncio.get_running_loop()
        try:
            async with asyncio.timeout(self.connect_timeout):
                _, conn = await loop.create_connection(
                    lambda: _Connection(self._address, self.max_frame_size, loop), self._host, self._port)
        except (OSError, TimeoutError) as exc:
            why = str(exc) or type(exc).__name__
            self._failures += 1
            delay = backoff_delay(self._failures, base=self.backoff_base, maximum=self.backoff_max,
                                  jitter=self._jitter())
            self._retry_at = self._clock() + delay
            log.warning("rpc=%s: cannot connect (%s); failure %d, next dial in %.2fs",
                        self._address, why, self._failures, delay)
            raise RpcUnavailable(f"{self._address}: cannot connect: {why}") from None
        finally:
            self._dialing = None
        if self._closed:
            await conn.close()
            raise RpcUnavailable(f"{self._address}: client closed")
        if self._failures:
            log.info("rpc=%s: connected after %d failed dials", self._address, self._failures)
        self._failures = 0
        self._retry_at = 0.0
        old, self._conn = self._conn, conn
        if old is not None:
            await old.close()
        return conn


class _Expired(Exception):
    """Set on a waiter whose per-call timeout ran out (turned into RpcTimeout by the caller)."""


def _expire(waiter: asyncio.Future[Response]) -> None:
    if not waiter.done():
        waiter.set_exception(_Expired())
