"""SqliteTraceStore: the delivery trace in a SQLite file (standalone mode), with RedisTraceStore's behaviour.

One table, ``trace_records``: a row per record with its key, its list (``history`` 0: the key's message records,
each tagged with its mid; 1: the key's history), when it arrived, and the bytes; rows of one list are read in
insertion order (``id``). The caps and lifetimes are those of ``message/trace_store.py``: each write trims its
list to the newest records that fit the cap; a record older than ``retention`` seconds is not read, and the
periodic :meth:`SqliteTraceStore.sweep` deletes it.

The file is separate from the message store's (a trace write never waits for a message write) and all SQL runs
on one worker thread that owns the connection (``sqlite_base.SqliteWorker``); each batch is one
``BEGIN IMMEDIATE`` transaction.
"""
from __future__ import annotations

import logging
import time
from typing import Callable, Sequence

from message.sqlite_base import SqliteWorker
from message.trace_store import Group, MessageTraceConfig, TraceRecord, group

log = logging.getLogger(__name__)

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
        self._db = SqliteWorker(path, SCHEMA, name="trace store", thread_name="sqlite-trace")

    @classmethod
    async def open(cls, path: str, config: MessageTraceConfig, *,
                   now: Callable[[], float] = time.time) -> SqliteTraceStore:
        store = cls(path, config, now)
        await store._db.open("trace open")
        store._db.repeat(config.sweep_interval, store.sweep, log, "trace sweep")
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

        await self._db.run("trace write", write_all, write=True)

    async def message_records(self, key: str) -> list[bytes]:
        since = self._now() - self._config.retention
        return await self._db.run("trace read", lambda: self._records(key, 0, since))

    async def history_records(self, key: str) -> list[bytes]:
        since = self._now() - self._config.retention
        return await self._db.run("trace read", lambda: self._records(key, 1, since))

    async def sweep(self) -> None:
        """Delete every record older than the retention."""
        since = self._now() - self._config.retention

        def sweep() -> None:
            self._db.connection().execute("DELETE FROM trace_records WHERE at < ?", (since,))

        await self._db.run("trace sweep", sweep, write=True)

    async def close(self) -> None:
        await self._db.close()

    # --- worker thread -------------------------------------------------------------------------------------

    def _records(self, key: str, history: int, since: float) -> list[bytes]:
        rows = self._db.connection().execute("SELECT record FROM trace_records WHERE key = ? AND history = ?"
                                             " AND at >= ? ORDER BY id", (key, history, since)).fetchall()
        return [bytes(record) for (record,) in rows]

    def _write_group(self, item: Group, now: float) -> None:
        db, history = self._db.connection(), int(item.history)
        db.executemany("INSERT INTO trace_records (key, history, at, record) VALUES (?, ?, ?, ?)",
                       [(item.key, history, now, record) for record in item.records])
        cap = self._config.max_history_records if item.history else self._config.max_message_records
        db.execute(TRIM_SQL, {"key": item.key, "history": history, "cap": cap})
