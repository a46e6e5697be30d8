"""What the SQLite files of a message node (the message store, the trace store, the directory) do the same way:
open a WAL-mode connection with a schema, run a body in one write transaction, and ``SqliteWorker``: one worker
thread that owns the connection, runs every body on it (SQLite and file errors become ``StorageUnavailable``),
optionally repeats a job (a sweep) on the loop, and closes it all.
"""
from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import logging
import os
import sqlite3
from typing import Awaitable, Callable, TypeVar

from message.storage import StorageUnavailable

T = TypeVar("T")


def open_database(path: str, schema: str) -> sqlite3.Connection:
    """Open (creating its directory and tables) ``path`` in autocommit mode, WAL journal, synchronous NORMAL."""
    directory = os.path.dirname(path)
    if directory:
        os.makedirs(directory, exist_ok=True)
    conn = sqlite3.connect(path, timeout=1.0, isolation_level=None)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("PRAGMA synchronous=NORMAL")
    conn.executescript(schema)
    return conn


def in_transaction(conn: sqlite3.Connection, body: Callable[[], T]) -> T:
    """Run ``body`` in one write transaction: all of it is committed or none."""
    conn.execute("BEGIN IMMEDIATE")
    try:
        result = body()
    except BaseException:
        conn.rollback()
        raise
    conn.execute("COMMIT")
    return result


class SqliteWorker:
    """One SQLite file served by one dedicated thread (a single-thread executor owning the connection), so the
    event loop never blocks on disk. ``name`` says what the file holds in error messages ("trace store")."""

    def __init__(self, path: str, schema: str, *, name: str, thread_name: str) -> None:
        self.path = path
        self.closed = False
        self._schema = schema
        self._name = name
        self._executor = concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix=thread_name)
        self._conn: sqlite3.Connection | None = None  # used only on the executor's thread
        self._repeater: asyncio.Task[None] | None = None

    async def open(self, action: str = "open") -> None:
        """Open (creating it and its directory if needed) the database; on failure the thread is stopped and
        ``StorageUnavailable`` raised."""
        try:
            await self.run(action, self._connect)
        except StorageUnavailable:
            self._executor.shutdown(wait=True)
            raise

    def connection(self) -> sqlite3.Connection:
        """The connection; call it only from a body running on the worker thread."""
        if self._conn is None:
            raise sqlite3.ProgrammingError(f"the {self._name} is closed")
        return self._conn

    async def run(self, action: str, body: Callable[[], T], *, write: bool = False) -> T:
        """Run ``body`` on the worker thread (in one write transaction when ``write``); SQLite and file errors
        become ``StorageUnavailable`` naming ``action`` and the file."""
        if self.closed:
            raise StorageUnavailable(f"{action}: the sqlite {self._name} is closed")

        def call() -> T:
            return in_transaction(self.connection(), body) if write else body()

        try:
            return await asyncio.get_running_loop().run_in_executor(self._executor, call)
        except (sqlite3.Error, OSError) as exc:
            raise StorageUnavailable(f"{action} failed on {self.path}: {type(exc).__name__}: {exc}") from exc

    def repeat(self, interval: float, job: Callable[[], Awaitable[None]], log: logging.Logger, what: str) -> None:
        """Run ``job`` every ``interval`` seconds until close; a ``StorageUnavailable`` is logged on ``log`` as
        ``path=P: <what> failed: ...`` and the next round still runs."""
        async def forever() -> None:
            while True:
                await asyncio.sleep(interval)
                try:
                    await job()
                except StorageUnavailable as exc:
                    log.error("path=%s: %s failed: %s", self.path, what, exc)

        self._repeater = asyncio.get_running_loop().create_task(forever())

    async def close(self) -> None:
        """Refuse new bodies, stop the repeated job, close the connection on the worker thread and stop the
        thread. A second call does nothing."""
        if self.closed:
            return
        self.closed = True
        if self._repeater is not None:
            self._repeater.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._repeater
        await asyncio.get_running_loop().run_in_executor(self._executor, self._disconnect)
        self._executor.shutdown(wait=True)

    def _connect(self) -> None:
        self._conn = open_database(self.path, self._schema)

    def _disconnect(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None
