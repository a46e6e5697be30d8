"""MessagePack-RPC server: tornado's TCPServer interface, asyncio protocols underneath.

:Status: used by ``message/rpc.py`` and ``comet/rpc.py`` through their node's start/stop.

A service object lists its callable names in ``RPC_METHODS``; ``register("MessageRPC", service)`` exposes each
``async def SavePrivate(self, *params)`` as ``"MessageRPC.SavePrivate"``. Each request runs as its own task, so a
slow call does not hold up the others pipelined on the same connection; responses go out in completion order,
matched by msgid. At most ``max_inflight`` requests per connection run at once; beyond that the server stops
reading from that connection until one finishes (back pressure instead of an unbounded task list). While the peer
does not take the replies (the transport's write buffer is above its high-water mark) the server starts no more
of that connection's requests and stops reading from it.

Connections are plain asyncio protocols (no IOStream, no reader coroutine; thirdparty/rpc_connection.py): a received
chunk is decoded in the protocol's ``data_received`` and its requests start at once; replies go through
:class:`thirdparty.rpc_stream.FrameWriter`. The class stays a tornado ``TCPServer`` so that nodes keep binding it
with ``listen(port, address=host)`` or ``add_sockets(bind_sockets(...))``.

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
import socket
from dataclasses import dataclass
from typing import Any, Awaitable, Callable, Coroutine, Iterable

from tornado.tcpserver import TCPServer

from thirdparty.rpc_codec import DEFAULT_MAX_FRAME_SIZE, ERR_INTERNAL, ERR_NOT_FOUND, ERR_PARAM, RpcError
from thirdparty.rpc_connection import ServerConnection, peer_name

log = logging.getLogger(__name__)

DEFAULT_MAX_INFLIGHT = 256
DEFAULT_FRAME_TIMEOUT = 5.0  # seconds a started request frame has to arrive whole (slowloris)


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


class RpcServer(TCPServer):
    """Serves the methods of the registered service objects over MessagePack-RPC."""

    def __init__(self, *, max_frame_size: int = DEFAULT_MAX_FRAME_SIZE,
                 max_inflight: int = DEFAULT_MAX_INFLIGHT, frame_timeout: float = DEFAULT_FRAME_TIMEOUT) -> None:
        super().__init__()
        self.frame_timeout = frame_timeout
        if max_inflight < 1:
            raise ValueError(f"max_inflight must be >= 1, got {max_inflight}")
        self.max_frame_size = max_frame_size
        self.max_inflight = max_inflight
        self._methods: dict[str, _Method] = {}
        self._services: set[str] = set()
        self._listeners: list[_Listener] = []
        self._connections: set[ServerConnection] = set()
        self._tasks: set[asyncio.Task[None]] = set()  # running requests, also of connections already closed
        self._draining = False
        self._loop: asyncio.AbstractEventLoop | None = None

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

    def add_sockets(self, sockets: Iterable[socket.socket]) -> None:
        """Accept connections on these listening sockets (``listen()`` binds and calls this); run on the loop."""
        loop = asyncio.get_running_loop()
        for sock in sockets:
            self._listeners.append(_Listener(loop, sock, self))

    def stop(self) -> None:
        """Stop accepting connections (the ones open keep being served)."""
        listeners, self._listeners = self._listeners, []
        for listener in listeners:
            listener.close()

    def start_request(self, coro: Coroutine[Any, Any, None]) -> asyncio.Task[None]:
        """Run one request; it keeps running if its connection closes, until it ends or close_all()."""
        loop = self._loop or asyncio.get_running_loop()  # one lookup: it costs a getpid() each time
        self._loop = loop
        task = loop.create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    async def close_all(self, grace: float = 0.0) -> None:
        """Stop accepting, let running requests answer for up to ``grace`` seconds, close every connection."""
        listeners = list(self._listeners)
        self.stop()
        self._draining = True
        for listener in listeners:
            await listener.closed()
        connections = list(self._connections)
        if self._tasks and grace > 0:
            await asyncio.wait(list(self._tasks), timeout=grace)
        for connection in connections:
            connection.abort()
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        await asyncio.gather(*(connection.done.wait() for connection in connections))
        log.info("rpc server closed %d connections", len(connections))

    @property
    def draining(self) -> bool:
        return self._draining

    def connection_made(self, connection: ServerConnection) -> bool:
        """Admit a new connection (False while draining: the caller closes it)."""
        if self._draining:
            return False
        self._connections.add(connection)
        return True

    def connection_lost(self, connection: ServerConnection) -> None:
        self._connections.discard(connection)

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


class _Listener:
    """One listening socket served by the event loop.

    ``loop.create_server`` is a coroutine, so it runs as a task; connections that arrive before it has started wait
    in the socket's backlog. Once the loop serves the socket, the loop owns it (closing the server closes it, on
    uvloop one loop pass later): this class closes the socket itself only if serving never started.
    """

    def __init__(self, loop: asyncio.AbstractEventLoop, sock: socket.socket, server: RpcServer) -> None:
        self._sock = sock
        self._server: asyncio.AbstractServer | None = None
        self._closing = False
        self._starting = loop.create_task(loop.create_server(lambda: ServerConnection(server), sock=sock))
        self._starting.add_done_callback(self._started)

    def _started(self, task: asyncio.Task[asyncio.AbstractServer]) -> None:
        if task.cancelled() or task.exception() is not None:
            if not task.cancelled():
                log.error("rpc listener %s: cannot serve: %s", peer_name(_sockname(self._sock)), task.exception())
            self._sock.close()
            return
        self._server = task.result()
        if self._closing:
            self._server.close()

    def close(self) -> None:
        """Stop accepting (now, or as soon as serving has started)."""
        self._closing = True
        if self._server is not None:
            self._server.close()

    async def closed(self) -> None:
        await asyncio.gather(self._starting, return_exceptions=True)
        if self._server is not None:
            await self._server.wait_closed()



def _sockname(sock: socket.socket) -> Any:
    try:
        return sock.getsockname()
    except OSError:
        return "?"
