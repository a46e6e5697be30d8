"""MessagePack-RPC server on tornado's TCPServer.

:Status: used by ``message/rpc.py`` and ``comet/rpc.py`` through their node's start/stop.

A service object lists its callable names in ``RPC_METHODS``; ``register("MessageRPC", service)`` exposes each
``async def SavePrivate(self, *params)`` as ``"MessageRPC.SavePrivate"``. Each request runs as its own task, so a
slow call does not hold up the others pipelined on the same connection; responses go out in completion order,
matched by msgid. At most ``max_inflight`` requests per connection run at once; beyond that the server stops
reading from that connection until one finishes (back pressure instead of an unbounded task list).

Errors: an unknown method or a wrong number of params -> ``[65534, ...]``; a handler's :class:`RpcError` ->
``[code, message]`` logged without traceback; anything else -> ``[65535, "internal error"]`` logged at ERROR with
its traceback. A malformed or oversized frame is logged once at WARNING and closes that connection only.
Notifications run the method and send nothing back.

Life cycle: ``listen(port, address=host)``; ``stop()`` stops accepting; ``await close_all(grace)`` also stops
accepting, answers the requests already running for up to ``grace`` seconds and closes every connection.
"""
from __future__ import annotations

import asyncio
import inspect
import logging
from dataclasses import dataclass
from typing import Any, Awaitable, Callable, Coroutine

from tornado.iostream import IOStream, StreamClosedError
from tornado.tcpserver import TCPServer

from thirdparty.rpc_codec import (
    DEFAULT_MAX_FRAME_SIZE, ERR_INTERNAL, ERR_NOT_FOUND, ERR_PARAM, Decoder, Notify, Request, Response, RpcError,
    RpcProtocolError, encode_error, encode_response,
)
from thirdparty.rpc_stream import FrameWriter

log = logging.getLogger(__name__)

READ_CHUNK_SIZE = 64 * 1024
DEFAULT_MAX_INFLIGHT = 256


@dataclass(frozen=True, slots=True)
class _Method:
    func: Callable[..., Awaitable[Any]]
    min_params: int
    max_params: int | None  # None: *params


def _param_counts(name: str, func: Callable[..., Any]) -> tuple[int, int | None]:
    positional = (inspect.Parameter.POSITIONAL_ONLY, inspect.Parameter.POSITIONAL_OR_KEYWORD)
    min_params, max_params = 0, 0
    for param in inspect.signature(func).parameters.values():
        if param.kind in positional:
            max_params += 1
            if param.default is inspect.Parameter.empty:
                min_params += 1
        elif param.kind is inspect.Parameter.VAR_POSITIONAL:
            return min_params, None
        elif param.kind is inspect.Parameter.KEYWORD_ONLY and param.default is inspect.Parameter.empty:
            raise TypeError(f"{name}: RPC methods cannot have required keyword-only parameters")
    return min_params, max_params


def _peer_name(address: Any) -> str:
    if isinstance(address, tuple) and len(address) >= 2:
        return f"{address[0]}:{address[1]}"
    return str(address)


class RpcServer(TCPServer):
    """Serves the methods of the registered service objects over MessagePack-RPC."""

    def __init__(self, *, max_frame_size: int = DEFAULT_MAX_FRAME_SIZE,
                 max_inflight: int = DEFAULT_MAX_INFLIGHT) -> None:
        super().__init__(max_buffer_size=max_frame_size + READ_CHUNK_SIZE, read_chunk_size=READ_CHUNK_SIZE)
        if max_inflight < 1:
            raise ValueError(f"max_inflight must be >= 1, got {max_inflight}")
        self.max_frame_size = max_frame_size
        self.max_inflight = max_inflight
        self._methods: dict[str, _Method] = {}
        self._services: set[str] = set()
        self._connections: set[_ServerConnection] = set()
        self._tasks: set[asyncio.Task[None]] = set()  # running requests, also of connections already closed
        self._draining = False

    @property
    def methods(self) -> list[str]:
        return sorted(self._methods)

    @property
    def connection_count(self) -> int:
        return len(self._connections)

    def register(self, service_name: str, obj: object) -> None:
        """Expose ``obj.<name>`` as ``"<service_name>.<name>"`` for every name in ``obj.RPC_METHODS``."""
        if service_name in self._services:
            raise ValueError(f"service {service_name!r} is already registered")
        names = getattr(obj, "RPC_METHODS", None)
        if not isinstance(names, (tuple, list)) or not all(isinstance(n, str) for n in names):
            raise TypeError(f"{type(obj).__name__}.RPC_METHODS must be a tuple of method names")
        methods: dict[str, _Method] = {}
        for name in names:
            full_name = f"{service_name}.{name}"
            func = getattr(obj, name, None)
            if func is None or not inspect.iscoroutinefunction(func):
                raise TypeError(f"{full_name} must be an async method")
            methods[full_name] = _Method(func, *_param_counts(full_name, func))
        self._services.add(service_name)
        self._methods.update(methods)

    async def handle_stream(self, stream: IOStream, address: Any) -> None:
        if self._draining:
            stream.close()
            return
        connection = _ServerConnection(self, stream, _peer_name(address))
        self._connections.add(connection)
        try:
            await connection.serve()
        finally:
            self._connections.discard(connection)
            connection.done.set()

    def start_request(self, coro: Coroutine[Any, Any, None]) -> asyncio.Task[None]:
        """Run one request; it keeps running if its connection closes, until it ends or close_all()."""
        task = asyncio.create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    async def close_all(self, grace: float = 0.0) -> None:
        """Stop accepting, let running requests answer for up to ``grace`` seconds, close every connection."""
        self.stop()
        self._draining = True
        connections = list(self._connections)
        if self._tasks and grace > 0:
            await asyncio.wait(list(self._tasks), timeout=grace)
        for connection in connections:
            connection.stream.close()
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        await asyncio.gather(*(connection.done.wait() for connection in connections))
        log.info("rpc server closed %d connections", len(connections))

    @property
    def draining(self) -> bool:
        return self._draining

    async def invoke(self, method: str, params: list[Any], peer: str, msgid: int | None) -> tuple[Any, Any]:
        """Run one call; return ``(error, result)`` as they go on the wire. Logs every failure once."""
        entry = self._methods.get(method)
        try:
            if entry is None:
                raise RpcError(ERR_PARAM, f"unknown method {method}")
            count = len(params)
            if count < entry.min_params or (entry.max_params is not None and count > entry.max_params):
                expected = (f"{entry.min_params}" if entry.min_params == entry.max_params
                            else f"{entry.min_params}..{entry.max_params if entry.max_params is not None else ''}")
                raise RpcError(ERR_PARAM, f"{method} takes {expected} params, got {count}")
            return None, await entry.func(*params)
        except RpcError as exc:
            level = logging.INFO if exc.code == ERR_NOT_FOUND else logging.WARNING
            log.log(level, "peer=%s msgid=%s method=%s: error %d %s", peer, msgid, method, exc.code, exc.message)
            return [exc.code, exc.message], None
        except Exception:
            log.error("peer=%s msgid=%s method=%s: internal error", peer, msgid, method, exc_info=True)
            return [ERR_INTERNAL, "internal error"], None


class _ServerConnection:
    """One client connection: read, decode, run each request as a task, write the responses."""

    def __init__(self, server: RpcServer, stream: IOStream, peer: str) -> None:
        self.server = server
        self.stream = stream
        self.peer = peer
        self.done = asyncio.Event()  # set when serve() has returned
        self._slots = asyncio.Semaphore(server.max_inflight)
        self._decoder = Decoder(server.max_frame_size)
        self._writer = FrameWriter(stream)

    async def serve(self) -> None:
        self.stream.set_nodelay(True)
        log.debug("peer=%s: connected", self.peer)
        try:
            while True:
                data = await self.stream.read_bytes(READ_CHUNK_SIZE, partial=True)
                for frame in self._decoder.feed(data):
                    await self._slots.acquire()
                    task = self.server.start_request(self._run(frame))
                    # A callback, not a finally: it also runs for a task cancelled before it started.
                    task.add_done_callback(lambda _: self._slots.release())
        except StreamClosedError:
            log.debug("peer=%s: disconnected", self.peer)
        except RpcProtocolError as exc:
            log.warning("peer=%s: protocol error, closing the connection: %s", self.peer, exc)
        finally:
            self.stream.close()

    async def _run(self, frame: Request | Response | Notify) -> None:
        if isinstance(frame, Request):
            await self._answer(frame)
        elif isinstance(frame, Notify):
            await self.server.invoke(frame.method, frame.params, self.peer, None)
        else:
            log.warning("peer=%s msgid=%d: unexpected response frame from a client, ignored", self.peer, frame.msgid)

    async def _answer(self, request: Request) -> None:
        if self.server.draining:
            error, result = [ERR_INTERNAL, "server is shutting down"], None
        else:
            error, result = await self.server.invoke(request.method, request.params, self.peer, request.msgid)
        data = self._encode(request, error, result)
        try:
            await self._writer.write(data)
        except StreamClosedError:
            log.info("peer=%s msgid=%d method=%s: connection closed before the reply was sent",
                     self.peer, request.msgid, request.method)

    def _encode(self, request: Request, error: Any, result: Any) -> bytes:
        try:
            data = encode_response(request.msgid, error, result)
        except (TypeError, ValueError, OverflowError):
            log.error("peer=%s msgid=%d method=%s: result cannot be encoded as msgpack",
                      self.peer, request.msgid, request.method, exc_info=True)
            return encode_error(request.msgid, ERR_INTERNAL, "internal error")
        if len(data) > self.server.max_frame_size:
            log.error("peer=%s msgid=%d method=%s: reply of %d bytes exceeds max_frame_size %d",
                      self.peer, request.msgid, request.method, len(data), self.server.max_frame_size)
            return encode_error(request.msgid, ERR_INTERNAL, "reply too large")
        return data
