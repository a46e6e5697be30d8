"""Registration and Watch: the two things a node keeps up on its ZooKeeper session (see ``thirdparty/zk.py``).

:Status: used through ``thirdparty.zk`` (``ZkSession.register``, ``watch_children``, ``watch_tree``).

Both run as one task on the event loop each, woken by kazoo events that ``ZkSession._from_kazoo`` hands over and
by the session's state changes; both wait for the connection, retry with backoff and jitter, and stop when
cancelled.
"""
from __future__ import annotations

import asyncio
import inspect
import logging
import posixpath
import uuid
from typing import TYPE_CHECKING, Any, Callable

from kazoo.exceptions import NoNodeError

from thirdparty.zk_base import CONNECTED, LOST, RETRYABLE, TOKEN_SEPARATOR, SnapshotCallback, ZkUnavailable, by_sequence

if TYPE_CHECKING:
    from thirdparty.zk import ZkSession

log = logging.getLogger("thirdparty.zk")


def _call_safely(callback: Callable[[str], None] | None, arg: str, what: str) -> None:
    if callback is None:
        return
    try:
        callback(arg)
    except Exception:  # noqa: BLE001 - the owner's bug is logged, the registration carries on
        log.error("znode %s: callback %r failed", what, callback, exc_info=True)


class Registration:
    """One ephemeral sequential znode kept registered for as long as the session object lives."""

    def __init__(self, session: ZkSession, parent: str, data: bytes, *,
                 on_lost: Callable[[str], None] | None, on_registered: Callable[[str], None] | None) -> None:
        self.parent = parent
        self.data = data
        self.token = uuid.uuid4().hex[:16]
        self.path: str | None = None
        self.first = asyncio.Event()   # set once the znode was created the first time
        self._session = session
        self._on_lost = on_lost
        self._on_registered = on_registered
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._cancelled = False

    @property
    def child(self) -> str | None:
        """The znode's name under ``parent`` while registered, else None."""
        return posixpath.basename(self.path) if self.path else None

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._keep_registered(), name=f"zk-register {self.parent}")

    async def cancel(self) -> None:
        """Stop keeping it and delete the znode (best effort: it goes with the session anyway)."""
        if self._cancelled:
            return
        self._cancelled = True
        self._session._registrations.discard(self)
        self._wake.set()
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
        path, self.path = self.path, None
        if path is None or self._session.state != CONNECTED:
            return
        try:
            await self._session.delete(path)
            log.info("znode %s: deregistered", path)
        except NoNodeError:
            pass
        except RETRYABLE as exc:
            log.warning("znode %s: not deleted (%s); it vanishes with the session", path, exc)

    def session_state(self, state: str) -> None:
        if state == LOST:
            self._lose("session lost")
        self._wake.set()

    def _on_event(self, _event: Any) -> None:
        """(kazoo thread) The own znode changed, vanished, or the connection dropped: re-check on the loop."""
        self._session._from_kazoo(self._wake.set)

    def _lose(self, reason: str) -> None:
        if self.path is None:
            return
        path, self.path = self.path, None
        log.warning("znode %s: lost (%s)", path, reason)
        _call_safely(self._on_lost, reason, path)

    async def _keep_registered(self) -> None:
        session, failures = self._session, 0
        while not self._cancelled:
            await session._connected.wait()
            self._wake.clear()
            try:
                if self.path is None:
                    self.path = await self._find_or_create()
                    log.info("znode %s: registered", self.path)
                    self.first.set()
                    _call_safely(self._on_registered, posixpath.basename(self.path), self.path)
                stat = await session._op(session._kazoo.exists_async, self.path, watch=self._on_event)
            except RETRYABLE as exc:
                failures += 1
                await session._retry_pause(failures, f"{self.parent}/{self.token}{TOKEN_SEPARATOR}*", exc)
                continue
            failures = 0
            if stat is None:
                self._lose("znode deleted")
                continue
            await self._wake.wait()

    async def _find_or_create(self) -> str:
        """The znode carrying this registration's token (one an interrupted create left), or a new one."""
        session, prefix = self._session, self.token + TOKEN_SEPARATOR
        try:
            children = await session.get_children(self.parent)
        except NoNodeError:
            children = []
        mine = by_sequence(child for child in children if child.startswith(prefix))
        for extra in mine[1:]:
            try:
                await session.delete(posixpath.join(self.parent, extra))
            except NoNodeError:
                pass
        if mine:
            return posixpath.join(self.parent, mine[0])
        created: str = await session._op(session._kazoo.create_async, posixpath.join(self.parent, prefix),
                                         self.data, ephemeral=True, sequence=True, makepath=True)
        return created


class Watch:
    """Children (depth 1) or children and grandchildren (depth 2) of a path with their data, kept current."""

    def __init__(self, session: ZkSession, path: str, depth: int, callback: SnapshotCallback) -> None:
        self.path = path
        self.synced = asyncio.Event()   # set after the first delivery
        self._session = session
        self._depth = depth
        self._callback = callback
        self._last: dict[str, Any] | None = None
        self._force = True
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._cancelled = False

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._keep_watching(), name=f"zk-watch {self.path}")

    async def wait_synced(self, timeout: float) -> None:
        """Wait for the first snapshot to be delivered; ZkUnavailable after ``timeout`` seconds."""
        try:
            async with asyncio.timeout(timeout):
                await self.synced.wait()
        except TimeoutError:
            raise ZkUnavailable(f"znode {self.path}: no snapshot within {timeout:g}s") from None

    async def cancel(self) -> None:
        self._cancelled = True
        self._session._watches.discard(self)
        self._wake.set()
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)

    def session_state(self, state: str) -> None:
        if state == CONNECTED:
            self._force = True  # watches were dropped with the connection: re-read, and tell the owner
        self._wake.set()

    def _on_event(self, _event: Any) -> None:
        """(kazoo thread) Something under the path changed: re-read on the loop."""
        self._session._from_kazoo(self._wake.set)

    async def _keep_watching(self) -> None:
        session, failures = self._session, 0
        while not self._cancelled:
            await session._connected.wait()
            self._wake.clear()
            try:
                snapshot = await self._read(self.path, self._depth)
            except NoNodeError:
                snapshot = None
            except RETRYABLE as exc:
                failures += 1
                await session._retry_pause(failures, self.path, exc)
                continue
            if snapshot is None:  # the watched path itself is missing: create it and read again
                try:
                    await session.ensure_path(self.path)
                except RETRYABLE as exc:
                    failures += 1
                    await session._retry_pause(failures, self.path, exc)
                continue
            failures = 0
            if self._force or snapshot != self._last:
                self._force, self._last = False, snapshot
                await self._deliver(snapshot)
                self.synced.set()
            await self._wake.wait()

    async def _read(self, path: str, depth: int) -> dict[str, Any]:
        session = self._session
        children: list[str] = await session._op(session._kazoo.get_children_async, path, watch=self._on_event)
        reads = [self._read(posixpath.join(path, child), depth - 1) if depth > 1
                 else self._read_data(posixpath.join(path, child)) for child in children]
        results = await asyncio.gather(*reads, return_exceptions=True)
        snapshot: dict[str, Any] = {}
        for child, result in zip(children, results):
            if isinstance(result, NoNodeError):
                continue  # gone between the listing and the read; the listing's watch fires for it
            if isinstance(result, BaseException):
                raise result
            snapshot[child] = result
        return snapshot

    async def _read_data(self, path: str) -> bytes:
        session = self._session
        data, _stat = await session._op(session._kazoo.get_async, path, watch=self._on_event)
        return bytes(data or b"")

    async def _deliver(self, snapshot: dict[str, Any]) -> None:
        try:
            result = self._callback(snapshot)
            if inspect.isawaitable(result):
                await result
        except Exception:  # noqa: BLE001 - the owner's bug is logged, the watch carries on
            log.error("znode %s: watch callback failed", self.path, exc_info=True)
