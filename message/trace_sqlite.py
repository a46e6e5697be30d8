"""SqliteTraceStore: the delivery trace in a SQLite file (standalone mode), with RedisTraceStore's behaviour.

One table, ``trace_records``: a row per record with its key, its list (``history`` 0: the key's message records,
each tagged with its mid; 1: the key's history), when it arrived, and the bytes; rows of one list are read in
insertion order (``id``). The caps and lifetimes are those of ``message/trace_store.py``: each write trims its
list to the newest records that fit the cap; a record older than ``retention`` seconds is not read, and the
periodic :meth:`SqliteTraceStore.sweep` deletes it.

The file is separate from the message store's (a trace write never waits for a message write) and all SQL runs
on one worker thread that owns the connection; each batch is one ``BEGIN IMMEDIATE`` transaction.
"""
from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import logging
import sqlite3
import time
from typing import Callable, Sequence, TypeVar

from message.sqlite_base import in_transaction, open_database
from message.storage import StorageUnavailable
from message.trace_store import Group, MessageTraceConfig, TraceRecord, group

log = logging.getLogger(__name__)
T = TypeVar("T")

SCHEMA = """
CREATE TABLE IF NOT EXISTS trace_records (
    id INTEGER PRIMARY KEY, key TEXT NOT NULL, history INTEGER NOT NULL, at REAL NOT NULL, record BLOB NOT NULL);
CREATE INDEX IF NOT EXISTS trace_records_by_list ON trace_records (key, history, id);
CREATE INDEX IF NOT EXISTS trace_records_by_time ON trace_records (at);
"""
TRIM_SQL = ("DELETE FROM trace_records WHERE key = :key AND history = :history AND id <= (SELECT id FROM"
            " trace_records WHERE key = :key AND history = :history ORDER BY id DESC LIMIT 1 OFFSET :cap)")


class SqliteTraceStore:
    """``TraceStore`` on SQLite; create it with ``await SqliteTraceStore.open(path, config)``."""

    def __init__(self, path: str, config: MessageTraceConfig, now: Callable[[], float]) -> None:
        self.path = path
        self._config = config
        self._now = now
        self._executor = concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="sqlite-trace")
        self._conn: sqlite3.Connection | None = None
        self._sweeper: asyncio.Task[None] | None = None
        self._closed = False

    @classmethod
    async def open(cls, path: str, config: MessageTraceConfig, *,
                   now: Callable[[], float] = time.time) -> SqliteTraceStore:
        store = cls(path, config, now)
        try:
            await store._run("open", store._connect)
        except StorageUnavailable:
            store._executor.shutdown(wait=True)
            raise
        store._sweeper = asyncio.get_running_loop().create_task(store._sweep_forever())
        log.info("path=%s: sqlite trace store open", path)
        return store

    def shard_of(self, key: str) -> str:
        return "sqlite"

    async def write(self, records: Sequence[TraceRecord]) -> None:
        config = self._config
        groups = group(records, max_message_records=config.max_message_records,
                       max_history_records=config.max_history_records)
        now = self._now()

        def write_all() -> None:
            for item in groups:
                self._write_group(item, now)

        await self._run("write", self._transaction, write_all)

    async def message_records(self, key: str) -> list[bytes]:
        since = self._now() - self._config.retention
        return await self._run("read", lambda: self._records(key, 0, since))

    async def history_records(self, key: str) -> list[bytes]:
        since = self._now() - self._config.retention
        return await self._run("read", lambda: self._records(key, 1, since))

    async def sweep(self) -> None:
        """Delete every record older than the retention."""
        since = self._now() - self._config.retention
        await self._run("sweep", self._transaction,
                        lambda: self._db().execute("DELETE FROM trace_records WHERE at < ?", (since,)))

    async def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        if self._sweeper is not None:
            self._sweeper.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._sweeper
        await asyncio.get_running_loop().run_in_executor(self._executor, self._disconnect)
        self._executor.shutdown(wait=True)

    # --- worker thread -------------------------------------------------------------------------------------

    def _connect(self) -> None:
        self._conn = open_database(self.path, SCHEMA)

    def _disconnect(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None

    def _db(self) -> sqlite3.Connection:
        if self._conn is None:
            raise sqlite3.ProgrammingError("the trace store is closed")
        return self._conn

    def _transaction(self, body: Callable[[], T]) -> T:
        return in_transaction(self._db(), body)

    def _records(self, key: str, history: int, since: float) -> list[bytes]:
        rows = self._db().execute("SELECT record FROM trace_records WHERE key = ? AND history = ? AND at >= ?"
                                  " ORDER BY id", (key, history, since)).fetchall()
        return [bytes(record) for (record,) in rows]

    def _write_group(self, item: Group, now: float) -> None:
        db, history = self._db(), int(item.history)
        db.executemany("INSERT INTO trace_records (key, history, at, record) VALUES (?, ?, ?, ?)",
                       [(item.key, history, now, record) for record in item.records])
        cap = self._config.max_history_records if item.history else self._config.max_message_records
        db.execute(TRIM_SQL, {"key": item.key, "history": history, "cap": cap})

    # --- loop side -----------------------------------------------------------------------------------------

    async def _run(self, action: str, func: Callable[..., T], *args: object) -> T:
        if self._closed:
            raise StorageUnavailable(f"trace {action}: the sqlite trace store is closed")
        try:
            return await asyncio.get_running_loop().run_in_executor(self._executor, func, *args)
        except (sqlite3.Error, OSError) as exc:
            raise StorageUnavailable(f"trace {action} failed on {self.path}: {type(exc).__name__}: {exc}") from exc

    async def _sweep_forever(self) -> None:
        while True:
            await asyncio.sleep(self._config.sweep_interval)
            try:
                await self.sweep()
            except StorageUnavailable as exc:
                log.error("path=%s: trace sweep failed: %s", self.path, exc)
