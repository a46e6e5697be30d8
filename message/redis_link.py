"""RedisLink: one pipelined connection to one Redis server (an asyncio protocol and hiredis's reply parser).

Why not redis-py's asyncio client: for each call (or pipeline) it checks a connection out of its pool, enters
asyncio timeouts, writes, and awaits one read per reply: 80-240 µs of CPU per call here, and several event-loop
passes between a request arriving and its command leaving. A RedisLink writes a command the moment it is asked
(commands asked for later in the same loop pass leave together in one write at its end, as
``thirdparty.rpc_stream.FrameWriter`` does for the RPC), and hands each reply to its caller straight from the
protocol's ``data_received``. Commands are packed by hiredis (``pack_command``) and replies parsed by hiredis, so
a command costs a few µs of Python. Redis runs the commands of one connection in order, so the replies come back
in the order of the waiters.

Failures (what the store turns into ``StorageUnavailable``): :class:`RedisUnavailable` when the server cannot be
reached (refused, not answering within ``timeout`` while connecting, connection lost: every command waiting on it
fails at once) or a command waits longer than ``timeout`` for its reply (the connection is then dropped, since
the replies behind it can no longer be matched). An error reply (``-ERR ...``, ``-NOSCRIPT ...``) is a value, a
:class:`ReplyError`, returned to the caller, also inside arrays. Nothing is retried: a command whose connection
broke may have run. The next command after a failure dials again, so a restarted Redis is used again at once.

On every new connection the link authenticates (``AUTH``), selects the URL's database and loads its registered
Lua scripts, before any command of a caller is written; ``EVALSHA`` then finds them unless someone flushed the
script cache meanwhile (``NOSCRIPT``: the caller loads the script and sends again).
"""
from __future__ import annotations

import asyncio
import logging
import ssl
import time
from collections import deque
from dataclasses import dataclass
from typing import Any, Callable, cast

import hiredis
from redis.asyncio.connection import parse_url

log = logging.getLogger(__name__)

Arg = bytes | str | int | float


class ReplyError(Exception):
    """An error reply from Redis (``-ERR ...``); returned as a value, never raised by the link."""


class RedisUnavailable(Exception):
    """The server could not be reached, the connection was lost, or a reply did not come within the timeout."""


class _ProtocolError(Exception):
    """hiredis could not parse what the server sent."""


def pack(*args: Arg) -> bytes:
    """One command in the Redis protocol (RESP)."""
    packed: bytes = hiredis.pack_command(cast(Any, args))  # the stub types a 1-tuple
    return packed


@dataclass(frozen=True)
class RedisAddress:
    """Where and how to connect, from a ``redis://``, ``rediss://`` or ``unix://`` URL."""

    host: str = "127.0.0.1"
    port: int = 6379
    path: str = ""                   # unix socket path (unix:// URLs)
    db: int = 0
    username: str | None = None
    password: str | None = None
    tls: ssl.SSLContext | None = None

    @classmethod
    def from_url(cls, url: str) -> RedisAddress:
        """Parse ``url`` as redis-py does; ``rediss://`` takes ``ssl_cert_reqs``, ``ssl_ca_certs``,
        ``ssl_certfile``, ``ssl_keyfile`` and ``ssl_check_hostname`` query options; others are ignored (logged)."""
        options: dict[str, Any] = dict(parse_url(url))
        connection_class = options.pop("connection_class", None)
        tls = None
        if url.startswith("rediss://"):
            tls = _tls_context(options)
        for name in ("ssl_cert_reqs", "ssl_ca_certs", "ssl_certfile", "ssl_keyfile", "ssl_check_hostname"):
            options.pop(name, None)
        known = {"host", "port", "path", "db", "username", "password"}
        ignored = sorted(set(options) - known)
        if ignored:
            log.warning("redis url %s: options %s are not used", _safe_url(url), ", ".join(ignored))
        del connection_class
        return cls(host=str(options.get("host") or "127.0.0.1"), port=int(options.get("port") or 6379),
                   path=str(options.get("path") or ""), db=int(options.get("db") or 0),
                   username=options.get("username"), password=options.get("password"), tls=tls)


def _tls_context(options: dict[str, Any]) -> ssl.SSLContext:
    context = ssl.create_default_context(cafile=options.get("ssl_ca_certs"))
    if options.get("ssl_certfile"):
        context.load_cert_chain(options["ssl_certfile"], options.get("ssl_keyfile"))
    reqs = options.get("ssl_cert_reqs", "required")
    mode = {"none": ssl.CERT_NONE, "optional": ssl.CERT_OPTIONAL, "required": ssl.CERT_REQUIRED}.get(
        str(reqs).lower(), ssl.CERT_REQUIRED) if isinstance(reqs, str) else ssl.VerifyMode(reqs)
    check = options.get("ssl_check_hostname")
    context.check_hostname = mode != ssl.CERT_NONE and str(check).lower() not in ("false", "0", "no")
    context.verify_mode = mode
    return context


def _safe_url(url: str) -> str:
    """The URL without its password, for logs."""
    scheme, sep, rest = url.partition("://")
    if "@" in rest:
        rest = "***@" + rest.split("@", 1)[1]
    return scheme + sep + rest


class _Resp(asyncio.Protocol):
    """One connection: waiters in command order, replies parsed as they arrive."""

    def __init__(self, name: str, loop: asyncio.AbstractEventLoop, timeout: float) -> None:
        self.name = name
        self.loop = loop
        self.timeout = timeout
        self.lost = False
        self._reason = "connection lost"
        self._reader = hiredis.Reader(protocolError=_ProtocolError, replyError=ReplyError)
        self._waiters: deque[tuple[asyncio.Future[Any], float]] = deque()  # (future, deadline)
        self._transport: asyncio.Transport | None = None
        self._window_open = False
        self._queued: list[bytes] = []
        self._watchdog: asyncio.TimerHandle | None = None
        self._gone: asyncio.Future[None] = loop.create_future()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._transport = cast(asyncio.Transport, transport)  # uvloop's transports are not registered subclasses

    def request(self, packed: bytes) -> asyncio.Future[Any]:
        """Send one packed command (now, or with the others of this loop pass); the future gets its reply."""
        if self.lost or self._transport is None:
            raise RedisUnavailable(f"shard {self.name}: {self._reason}")
        future: asyncio.Future[Any] = self.loop.create_future()
        deadline = time.monotonic() + self.timeout
        self._waiters.append((future, deadline))
        if self._watchdog is None:
            self._watchdog = self.loop.call_at(self.loop.time() + self.timeout, self._check_deadline)
        if self._window_open:
            self._queued.append(packed)
        else:
            self._window_open = True
            self.loop.call_soon(self._close_window)
            self._transport.write(packed)
        return future

    def _close_window(self) -> None:
        self._window_open = False
        queued = self._queued
        if queued and not self.lost and self._transport is not None:
            self._queued = []
            self._transport.write(queued[0] if len(queued) == 1 else b"".join(queued))

    def data_received(self, data: bytes) -> None:
        reader = self._reader
        reader.feed(data)
        waiters = self._waiters
        try:
            while (reply := reader.gets()) is not False:
                if not waiters:
                    self.drop("a reply nobody asked for")
                    return
                future, _ = waiters.popleft()
                if not future.done():
                    future.set_result(reply)
        except _ProtocolError as exc:
            self.drop(f"protocol error: {exc}")

    def _check_deadline(self) -> None:
        self._watchdog = None
        if not self._waiters or self.lost:
            return
        deadline = self._waiters[0][1]
        now = time.monotonic()
        if deadline <= now:
            self.drop(f"no reply within {self.timeout:g}s")
        else:
            self._watchdog = self.loop.call_at(self.loop.time() + (deadline - now), self._check_deadline)

    def drop(self, reason: str) -> None:
        """Close the connection now; everything waiting on it fails with ``reason``."""
        if not self.lost:
            self._reason = reason
            log.warning("shard=%s: %s; closing the connection (%d command(s) waiting)", self.name, reason,
                        len(self._waiters))
        if self._transport is not None:
            self._transport.abort()

    def connection_lost(self, exc: Exception | None) -> None:
        self.lost = True
        if self._watchdog is not None:
            self._watchdog.cancel()
            self._watchdog = None
        waiters, self._waiters = self._waiters, deque()
        error = RedisUnavailable(f"shard {self.name}: {self._reason}")
        for future, _ in waiters:
            if not future.done():
                future.set_exception(error)
        if not self._gone.done():
            self._gone.set_result(None)

    async def close(self) -> None:
        self._reason = "store closed"
        if self._transport is not None:
            self._transport.abort()
            await self._gone


class RedisLink:
    """A pipelined connection to one Redis server (a shard), dialled on first use and after every loss."""

    def __init__(self, name: str, url: str, *, timeout: float) -> None:
        self.name = name
        self.address = RedisAddress.from_url(url)
        self.timeout = timeout
        self._scripts: dict[str, str] = {}  # sha1 -> source, loaded on every new connection
        self._conn: _Resp | None = None
        self._dialing: asyncio.Task[_Resp] | None = None
        self._closed = False

    def register_script(self, sha: str, source: str) -> None:
        """Load ``source`` (whose SHA1 is ``sha``) on every connection before it is used."""
        self._scripts[sha] = source

    async def execute(self, packed: bytes) -> Any:
        """Run one packed command (see :func:`pack`); its reply (a :class:`ReplyError` for an error reply)."""
        conn = self._conn
        if conn is None or conn.lost:
            conn = await self._connection()
        return await conn.request(packed)

    async def close(self) -> None:
        self._closed = True
        if self._dialing is not None:
            await asyncio.gather(self._dialing, return_exceptions=True)
        conn, self._conn = self._conn, None
        if conn is not None:
            await conn.close()

    async def _connection(self) -> _Resp:
        if self._closed:
            raise RedisUnavailable(f"shard {self.name}: the store is closed")
        if self._dialing is None:
            self._dialing = asyncio.get_running_loop().create_task(self._dial())
            # The dial's error reaches every waiting caller; if they were all cancelled, nobody else needs it.
            self._dialing.add_done_callback(_retrieve)
        return await asyncio.shield(self._dialing)

    async def _dial(self) -> _Resp:
        loop = asyncio.get_running_loop()
        address = self.address
        factory: Callable[[], _Resp] = lambda: _Resp(self.name, loop, self.timeout)  # noqa: E731
        conn: _Resp | None = None
        try:
            async with asyncio.timeout(self.timeout):
                if address.path:
                    _, conn = await loop.create_unix_connection(factory, address.path)
                else:
                    _, conn = await loop.create_connection(
                        factory, address.host, address.port, ssl=address.tls,
                        server_hostname=address.host if address.tls is not None else None)
                await self._handshake(conn)
        except (OSError, TimeoutError, RedisUnavailable, ssl.SSLError) as exc:
            if conn is not None:
                await conn.close()
            raise RedisUnavailable(f"shard {self.name}: cannot connect: {type(exc).__name__}: {exc}") from None
        finally:
            self._dialing = None
        if self._closed:
            await conn.close()
            raise RedisUnavailable(f"shard {self.name}: the store is closed")
        self._conn = conn
        return conn

    async def _handshake(self, conn: _Resp) -> None:
        """AUTH, SELECT and SCRIPT LOAD, pipelined; any error reply fails the dial."""
        address = self.address
        commands: list[bytes] = []
        if address.password is not None:
            credentials: tuple[str, ...] = ((address.username, address.password) if address.username
                                            else (address.password,))
            commands.append(pack("AUTH", *credentials))
        if address.db:
            commands.append(pack("SELECT", address.db))
        commands.extend(pack("SCRIPT", "LOAD", source) for source in self._scripts.values())
        replies = await asyncio.gather(*(conn.request(command) for command in commands))
        for reply in replies:
            if isinstance(reply, ReplyError):
                raise RedisUnavailable(f"setting up the connection: {reply}")


def _retrieve(task: asyncio.Task[Any]) -> None:
    if not task.cancelled():
        task.exception()
