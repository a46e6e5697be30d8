"""ZooKeeper on the event loop: one kazoo session, ephemeral registrations that outlive a session loss, and
watches that deliver whole snapshots.

:Status: used by ``comet/cluster.py``, ``message/cluster.py`` and ``web/zk_view.py``.

The public face of three modules: :class:`ZkSession` lives here; ``Registration`` and ``Watch`` in
``zk_recipes.py``; states, :class:`ZkUnavailable` and the sequential-name helpers in ``zk_base.py``. Import them
all from here.

Threads. kazoo runs its connection and its callbacks (watch events, state listeners, results of ``*_async``
calls) on threads of its own. Every one of them reaches the event loop through :meth:`ZkSession._from_kazoo`
(``loop.call_soon_threadsafe``), the one place in the code base where another thread hands work to the loop;
everything else here runs on the loop. The blocking kazoo calls (connecting, stopping) run in the loop's default
executor; every other operation is a kazoo ``*_async`` call, which only queues the request, and its result comes
back through the same crossing. Every wait is bounded: an operation by the session timeout, a start by its own.
Bounds use ``asyncio.timeout``, never ``asyncio.wait_for``: on Python 3.11 ``wait_for`` loses a cancellation that
arrives together with the result, and a registration or watch task told to stop would then wait forever.

States, as kazoo reports them: ``connected``; ``suspended`` (the connection dropped, the session may still be
alive on the server; kazoo reconnects by itself); ``lost`` (the server expired the session: its ephemeral znodes
are gone; kazoo then opens a new session and the state goes back to ``connected``).

:class:`Registration` keeps one ephemeral sequential znode ``<parent>/<token>_<10-digit sequence>`` alive: created
with retries (backoff and jitter); a connection lost in the middle of a create is resolved by looking for the
token, so a retry never leaves a second znode; re-created (with a new, higher sequence) after the session was
lost or the znode was deleted, and ``on_lost(reason)`` is called first. :class:`Watch` delivers the children of a
path with their data (``watch_children``) or two levels of them (``watch_tree``) as a plain dict, re-read and
re-armed after every change and after every reconnection; an unchanged snapshot is only delivered again after a
reconnection. While the session is suspended a watch keeps its last snapshot.
"""
from __future__ import annotations

import asyncio
import logging
import posixpath
import random
from typing import Any, Awaitable, Callable

from kazoo.client import KazooClient
from kazoo.exceptions import KazooException
from kazoo.retry import KazooRetry

from thirdparty.rpc_client import backoff_delay
from thirdparty.zk_base import (
    CONNECTED, LOST, RETRY_BASE, RETRY_MAX, RETRYABLE, SUSPENDED, SnapshotCallback, StateListener, ZkUnavailable,
    by_sequence, lowest_valid, sequence_of,
)
from thirdparty.zk_recipes import Registration, Watch

__all__ = ["CONNECTED", "LOST", "RETRYABLE", "SUSPENDED", "Registration", "Watch", "ZkSession", "ZkUnavailable",
           "by_sequence", "lowest_valid", "sequence_of"]

log = logging.getLogger(__name__)

_KAZOO_STATES = {"CONNECTED": CONNECTED, "SUSPENDED": SUSPENDED, "LOST": LOST}


class ZkSession:
    """One ZooKeeper session for a node; start and use it on one event loop."""

    def __init__(self, hosts: str, *, session_timeout: float, root: str = "/pushcluster",
                 reconnect_max_delay: float = 1.0, sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
                 jitter: Callable[[], float] = random.random) -> None:
        self.hosts = hosts
        self.root = root
        self.session_timeout = session_timeout
        self.state = LOST
        self._sleep = sleep
        self._jitter = jitter
        self._kazoo = KazooClient(hosts=hosts, timeout=session_timeout, connection_retry=KazooRetry(
            max_tries=-1, delay=0.05, backoff=2, max_delay=reconnect_max_delay))
        self._loop: asyncio.AbstractEventLoop | None = None
        self._connected = asyncio.Event()
        self._listeners: list[StateListener] = []
        self._registrations: set[Registration] = set()
        self._watches: set[Watch] = set()
        self._closed = False

    def path(self, *parts: str) -> str:
        """``root/part/...``."""
        return posixpath.join(self.root, *parts)

    @property
    def client_id(self) -> tuple[int, bytes] | None:
        """(session id, password) while connected (the tests use it to expire the session)."""
        client_id: tuple[int, bytes] | None = self._kazoo.client_id
        return client_id

    # -- life cycle ----------------------------------------------------------------------------------------

    async def start(self, timeout: float | None = None) -> None:
        """Connect (bounded by ``timeout``, default the session timeout) and make sure ``root`` exists."""
        if self._loop is not None:
            raise RuntimeError("ZkSession.start() called twice")
        loop = self._loop = asyncio.get_running_loop()
        timeout = self.session_timeout if timeout is None else timeout
        deadline = loop.time() + timeout
        self._kazoo.add_listener(self._kazoo_state)
        try:
            live = await loop.run_in_executor(None, self._connect_blocking, timeout)
            if live:
                async with asyncio.timeout(max(0.1, deadline - loop.time())):
                    await self._connected.wait()
        except TimeoutError:
            live = False
        if not live:
            await self._shutdown_kazoo()
            raise ZkUnavailable(f"ZooKeeper {self.hosts}: no session within {timeout:g}s")
        try:
            if await self._op(self._kazoo.exists_async, "/") is None:
                raise ZkUnavailable(f"ZooKeeper {self.hosts}: the chroot does not exist; create it first")
            await self.ensure_path(self.root)
        except (KazooException, ZkUnavailable):
            await self._shutdown_kazoo()
            raise
        log.info("zookeeper=%s root=%s: session 0x%x open", self.hosts, self.root, (self.client_id or (0,))[0])

    async def stop(self) -> None:
        """Deregister (delete this session's registered znodes), cancel the watches, close the session."""
        if self._closed:
            return
        for registration in list(self._registrations):
            await registration.cancel()
        for watch in list(self._watches):
            await watch.cancel()
        self._closed = True
        self._connected.clear()
        if self._loop is not None:
            await self._shutdown_kazoo()
        log.info("zookeeper=%s: session closed", self.hosts)

    def on_state(self, listener: StateListener) -> None:
        """Call ``listener(state)`` on the loop at every change among CONNECTED, SUSPENDED, LOST."""
        self._listeners.append(listener)

    def _connect_blocking(self, timeout: float) -> bool:
        """(executor) Connect; False when no session came within ``timeout``."""
        self._kazoo.start_async().wait(timeout)
        return bool(self._kazoo.connected)

    async def _shutdown_kazoo(self) -> None:
        self._closed = True
        await asyncio.get_running_loop().run_in_executor(None, self._close_blocking)

    def _close_blocking(self) -> None:
        """(executor) Stop kazoo's threads and close its sockets."""
        self._kazoo.stop()
        self._kazoo.close()

    # -- the crossing from kazoo's threads -----------------------------------------------------------------

    def _from_kazoo(self, callback: Callable[..., None], *args: Any) -> None:
        """Run ``callback(*args)`` on the loop; callable from any thread (this is the only crossing)."""
        loop = self._loop
        if loop is None or loop.is_closed():
            return
        try:
            loop.call_soon_threadsafe(callback, *args)
        except RuntimeError:
            pass  # the loop closed in the meantime: nothing waits for this any more

    def _kazoo_state(self, kazoo_state: str) -> None:
        """(kazoo's connection thread) A state listener must not block: hand the change over."""
        self._from_kazoo(self._apply_state, _KAZOO_STATES.get(str(kazoo_state), LOST))

    def _apply_state(self, state: str) -> None:
        if self._closed or state == self.state:
            return
        previous, self.state = self.state, state
        log.log(logging.INFO if state == CONNECTED else logging.WARNING, "zookeeper=%s: session %s -> %s",
                self.hosts, previous, state)
        if state == CONNECTED:
            self._connected.set()
        else:
            self._connected.clear()
        for registration in list(self._registrations):
            registration.session_state(state)
        for watch in list(self._watches):
            watch.session_state(state)
        for listener in list(self._listeners):
            try:
                listener(state)
            except Exception:  # noqa: BLE001 - one listener's bug must not stop the others
                log.error("zookeeper=%s: state listener %r failed", self.hosts, listener, exc_info=True)

    # -- operations ----------------------------------------------------------------------------------------

    async def _op(self, method: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        """Run the kazoo ``*_async`` ``method`` and await its result on the loop (bounded by the session timeout)."""
        if self._closed or self._loop is None:
            raise ZkUnavailable(f"ZooKeeper {self.hosts}: session closed")
        future: asyncio.Future[Any] = self._loop.create_future()

        def settle(result: Any) -> None:
            if future.done():
                return  # the caller gave up (timeout, cancel)
            try:
                future.set_result(result.get_nowait())
            except Exception as exc:  # noqa: BLE001 - handed to the awaiting caller as is
                future.set_exception(exc)

        method(*args, **kwargs).rawlink(lambda result: self._from_kazoo(settle, result))
        try:
            async with asyncio.timeout(self.session_timeout):
                return await future
        except TimeoutError:
            raise ZkUnavailable(f"ZooKeeper {self.hosts}: {method.__name__} {args[:1]} got no answer in "
                                f"{self.session_timeout:g}s") from None

    async def ensure_path(self, path: str) -> None:
        await self._op(self._kazoo.ensure_path_async, path)

    async def get_children(self, path: str) -> list[str]:
        children: list[str] = await self._op(self._kazoo.get_children_async, path)
        return children

    async def get_data(self, path: str) -> bytes:
        data, _stat = await self._op(self._kazoo.get_async, path)
        return bytes(data or b"")

    async def delete(self, path: str) -> None:
        await self._op(self._kazoo.delete_async, path)

    async def register(self, parent: str, data: bytes, *, on_lost: Callable[[str], None] | None = None,
                       on_registered: Callable[[str], None] | None = None,
                       timeout: float | None = None) -> Registration:
        """Create ``parent/<token>_<seq>`` (ephemeral) and keep it registered; wait for the first creation."""
        registration = Registration(self, parent, data, on_lost=on_lost, on_registered=on_registered)
        self._registrations.add(registration)
        registration.start()
        try:
            async with asyncio.timeout(self.session_timeout if timeout is None else timeout):
                await registration.first.wait()
        except TimeoutError:
            await registration.cancel()
            raise ZkUnavailable(f"ZooKeeper {self.hosts}: could not register under {parent}") from None
        return registration

    def watch_children(self, path: str, callback: Callable[[dict[str, bytes]], Awaitable[None] | None]) -> Watch:
        """Deliver ``{child: data}`` of ``path`` to ``callback`` (on the loop) now and after every change."""
        return self._watch(path, 1, callback)

    def watch_tree(self, path: str,
                   callback: Callable[[dict[str, dict[str, bytes]]], Awaitable[None] | None]) -> Watch:
        """Deliver ``{child: {grandchild: data}}`` of ``path`` to ``callback`` now and after every change."""
        return self._watch(path, 2, callback)

    def _watch(self, path: str, depth: int, callback: SnapshotCallback) -> Watch:
        if self._closed or self._loop is None:
            raise ZkUnavailable(f"ZooKeeper {self.hosts}: session closed")
        watch = Watch(self, path, depth, callback)
        self._watches.add(watch)
        watch.start()
        return watch

    async def _retry_pause(self, failures: int, what: str, exc: BaseException) -> None:
        delay = backoff_delay(failures, base=RETRY_BASE, maximum=RETRY_MAX, jitter=self._jitter())
        log.warning("znode %s: %s (%s); retry %d in %.2fs", what, type(exc).__name__, exc, failures, delay)
        await self._sleep(delay)
