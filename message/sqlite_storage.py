"""SqliteStorage: the message store in one SQLite file (standalone mode), with RedisStorage's behaviour.

Tables: ``messages`` (key, mid, expire_at, msg) holds stored messages; ``key_meta`` (key, last_mid, trim_mid,
expire_at) is a key's last-mid record and trim mark, kept at least ``mid_ttl`` seconds after the key's last
save, like ``push:mid:{K}``/``push:trim:{K}`` in Redis. SQLite integers are int64, so mids are exact.
Public (broadcast) messages live in the same tables under ``PUBLIC_KEY``, a key with a control character that
``check_key`` refuses, so no caller's key can read, write or delete them; they are capped at ``max_public``.

All SQL runs on one dedicated worker thread owning the connection (``sqlite_base.SqliteWorker``), so the event
loop never blocks on disk. Every save, trim, fetch and delete is one ``BEGIN IMMEDIATE`` transaction. Expired rows are
removed lazily by ``fetch`` and by a periodic ``sweep`` (which also forgets abandoned keys); both raise the trim
mark so a reader learns it missed something.
"""
from __future__ import annotations

import logging
import time
from typing import Callable, Sequence

from message.mid import NS_PER_SECOND, expire_at, time_id
from message.sqlite_base import SqliteWorker
from message.storage import (DEFAULT_LIMITS, PUBLIC_LOG_KEY, FetchResult, Limits, StorageUnavailable, check_key,
                             check_message, check_mid, check_save, check_save_many)

log = logging.getLogger(__name__)

PUBLIC_KEY = "\x01public"  # the reserved key of the public messages (no valid key has a control character)

SCHEMA = """
CREATE TABLE IF NOT EXISTS messages (
    key TEXT NOT NULL, mid INTEGER NOT NULL, expire_at INTEGER NOT NULL, msg BLOB NOT NULL,
    PRIMARY KEY (key, mid)) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS messages_by_expiry ON messages (expire_at);
CREATE TABLE IF NOT EXISTS key_meta (
    key TEXT PRIMARY KEY, last_mid INTEGER NOT NULL, trim_mid INTEGER NOT NULL DEFAULT 0,
    expire_at INTEGER NOT NULL) WITHOUT ROWID;
"""

SWEEP_SQL = (
    # remember the newest expired mid of each key as its trim mark, then drop the rows
    "UPDATE key_meta SET trim_mid = MAX(trim_mid, (SELECT MAX(mid) FROM messages m"
    " WHERE m.key = key_meta.key AND m.expire_at < :now))"
    " WHERE key IN (SELECT key FROM messages WHERE expire_at < :now)",
    "DELETE FROM messages WHERE expire_at < :now",
    # a key with no messages whose last-mid record has outlived mid_ttl is forgotten, as Redis would
    "DELETE FROM key_meta WHERE expire_at < :now"
    " AND NOT EXISTS (SELECT 1 FROM messages m WHERE m.key = key_meta.key)",
)


class SqliteStorage:
    """The ``Storage`` Protocol on SQLite; create it with ``await SqliteStorage.open(path)``."""

    def __init__(self, path: str, *, limits: Limits, now_ns: Callable[[], int], sweep_interval: float) -> None:
        self.path = path
        self._limits = limits
        self._now_ns = now_ns
        self._sweep_interval = sweep_interval
        self._db = SqliteWorker(path, SCHEMA, name="store", thread_name="sqlite-storage")

    @classmethod
    async def open(cls, path: str, *, limits: Limits = DEFAULT_LIMITS, now_ns: Callable[[], int] = time.time_ns,
                   sweep_interval: float = 60.0) -> SqliteStorage:
        """Open (creating it and its directory if needed) the database at ``path`` and start the sweeper."""
        storage = cls(path, limits=limits, now_ns=now_ns, sweep_interval=sweep_interval)
        await storage._db.open()
        storage._db.repeat(storage._sweep_interval, storage.sweep, log, "sweep")
        log.info("path=%s: sqlite message store open", path)
        return storage

    async def save(self, key: str, msg: bytes, expire: int) -> int:
        check_save(key, msg, expire, self._limits)
        now_ns = self._now_ns()
        return await self._db.run("save",
                                 lambda: self._save_one(key, msg, expire, now_ns, self._limits.max_per_key),
                                 write=True)

    async def save_many(self, keys: Sequence[str], msg: bytes, expire: int) -> dict[str, int]:
        distinct = check_save_many(keys, msg, expire, self._limits)
        now_ns = self._now_ns()

        def save_all() -> dict[str, int]:
            cap = self._limits.max_per_key
            return {key: self._save_one(key, msg, expire, now_ns, cap) for key in distinct}

        try:
            return await self._db.run("save_many", save_all, write=True)
        except StorageUnavailable as exc:
            log.error("path=%s: %d keys not saved (first key=%s): %s", self.path, len(distinct),
                      distinct[0] if distinct else "-", exc)
            return {}

    async def fetch(self, key: str, after_mid: int) -> FetchResult:
        check_key(key, self._limits)
        check_mid(after_mid)
        now_s = self._now_ns() // NS_PER_SECOND
        return await self._db.run("fetch", lambda: self._fetch(key, after_mid, now_s), write=True)

    async def save_public(self, msg: bytes, expire: int) -> int:
        check_message(msg, expire, self._limits)
        now_ns = self._now_ns()
        return await self._db.run("save_public",
                                 lambda: self._save_one(PUBLIC_KEY, msg, expire, now_ns, self._limits.max_public),
                                 write=True)

    async def fetch_public(self, after_mid: int) -> FetchResult:
        check_mid(after_mid)
        now_s = self._now_ns() // NS_PER_SECOND
        return await self._db.run("fetch_public", lambda: self._fetch(PUBLIC_KEY, after_mid, now_s),
                                 write=True)

    async def delete(self, key: str) -> int:
        check_key(key, self._limits)

        def delete() -> int:
            conn = self._db.connection()
            count = conn.execute("DELETE FROM messages WHERE key = ?", (key,)).rowcount
            conn.execute("UPDATE key_meta SET trim_mid = 0 WHERE key = ?", (key,))
            return count

        return await self._db.run("delete", delete, write=True)

    async def sweep(self) -> None:
        """Remove expired messages (raising trim marks) and forget keys whose last-mid record expired."""
        now_s = self._now_ns() // NS_PER_SECOND

        def sweep() -> None:
            for sql in SWEEP_SQL:
                self._db.connection().execute(sql, {"now": now_s})

        await self._db.run("sweep", sweep, write=True)

    async def close(self) -> None:
        if self._db.closed:
            return
        await self._db.close()
        log.info("path=%s: sqlite message store closed", self.path)

    # --- worker thread -------------------------------------------------------------------------------------

    def _save_one(self, key: str, msg: bytes, expire: int, now_ns: int, cap: int) -> int:
        conn = self._db.connection()
        limits = self._limits
        now_s = now_ns // NS_PER_SECOND
        row = conn.execute("SELECT last_mid, expire_at FROM key_meta WHERE key = ?", (key,)).fetchone()
        mid = time_id(now_ns) if row is None else max(time_id(now_ns), row[0] + 1)
        meta_expire = max(row[1] if row else 0, now_s + max(expire, limits.mid_ttl))
        conn.execute("INSERT INTO key_meta (key, last_mid, expire_at) VALUES (?, ?, ?) ON CONFLICT (key)"
                     " DO UPDATE SET last_mid = excluded.last_mid, expire_at = excluded.expire_at",
                     (key, mid, meta_expire))
        if expire > 0:
            conn.execute("INSERT INTO messages (key, mid, expire_at, msg) VALUES (?, ?, ?, ?)",
                         (key, mid, expire_at(now_ns, expire), msg))
            (count,) = conn.execute("SELECT COUNT(*) FROM messages WHERE key = ?", (key,)).fetchone()
            if count > cap:
                (mark,) = conn.execute("SELECT MAX(mid) FROM (SELECT mid FROM messages WHERE key = ?"
                                       " ORDER BY mid LIMIT ?)", (key, count - cap)).fetchone()
                conn.execute("DELETE FROM messages WHERE key = ? AND mid <= ?", (key, mark))
                conn.execute("UPDATE key_meta SET trim_mid = MAX(trim_mid, ?) WHERE key = ?", (mark, key))
        return mid

    def _fetch(self, key: str, after_mid: int, now_s: int) -> FetchResult:
        conn = self._db.connection()
        rows = conn.execute("SELECT mid, expire_at, msg FROM messages WHERE key = ? AND mid > ? ORDER BY mid",
                            (key, after_mid)).fetchall()
        meta = conn.execute("SELECT trim_mid FROM key_meta WHERE key = ?", (key,)).fetchone()
        trim_mark = meta[0] if meta else 0
        expired = [mid for mid, expires, _ in rows if now_s > expires]
        if expired:
            conn.executemany("DELETE FROM messages WHERE key = ? AND mid = ?", [(key, mid) for mid in expired])
            trim_mark = max(trim_mark, expired[-1])
            conn.execute("UPDATE key_meta SET trim_mid = MAX(trim_mid, ?) WHERE key = ?", (trim_mark, key))
            log.debug("key=%s: removed %d expired messages", PUBLIC_LOG_KEY if key == PUBLIC_KEY else key,
                      len(expired))
        msgs = [(mid, bytes(msg)) for mid, expires, msg in rows if now_s <= expires]
        return FetchResult(msgs, trim_mark > after_mid)
