"""SqliteDirectory: the tag/alias directory in a SQLite file (standalone mode), with RedisDirectory's behaviour.

Tables: ``dir_tags`` (tag, key) holds one row per tag of a key (primary key (tag, key): a tag's keys in key order;
an index (key, tag): a key's tags); ``dir_aliases`` (alias primary key, key unique) one row per alias. The file is
``directory.db`` beside the message store's (its own file, so a directory update never waits for a message
write). All SQL runs on one worker thread owning the connection (``sqlite_base.SqliteWorker``); every update is
one ``BEGIN IMMEDIATE`` transaction. Text compares with SQLite's BINARY collation, i.e. by UTF-8 bytes, the same order as Redis's
ZRANGEBYLEX and Python's ``str``.

A tag expression becomes one SQL statement (``expression_sql``): each AND-group a join of its tags' rows on the
key, walked in key order from the cursor and cut at ``count + 1`` rows; the groups a UNION (distinct keys),
ordered, cut at ``count + 1`` again. The extra row says whether there is a next page, so ``next`` is None as soon
as the last page is returned. (Unlike Redis, a call's work is not bounded by a budget: standalone mode serves one
node's keys.)
"""
from __future__ import annotations

import logging
import os
from typing import Sequence

from message.directory import (DEFAULT_DIRECTORY_LIMITS, AliasChange, DirectoryLimits, KeyInfo, TagPage,
                               check_alias, check_set_alias, check_tag_query, check_tags, describe)
from message.sqlite_base import SqliteWorker
from message.storage import check_key

log = logging.getLogger(__name__)

FILE_NAME = "directory.db"

SCHEMA = """
CREATE TABLE IF NOT EXISTS dir_tags (tag TEXT NOT NULL, key TEXT NOT NULL, PRIMARY KEY (tag, key)) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS dir_tags_by_key ON dir_tags (key, tag);
CREATE TABLE IF NOT EXISTS dir_aliases (alias TEXT PRIMARY KEY, key TEXT NOT NULL UNIQUE) WITHOUT ROWID;
"""


def directory_file(storage_path: str) -> str:
    """Where the SQLite directory lives: ``directory.db`` in the message store's directory."""
    return os.path.join(os.path.dirname(storage_path), FILE_NAME)


def expression_sql(groups: Sequence[Sequence[str]]) -> tuple[str, dict[str, str]]:
    """The statement for an expression and its tag parameters (``:g<i>t<j>``; the caller adds ``:after`` and
    ``:limit``). Each group: the keys > :after having all its tags, ascending, at most :limit of them."""
    params: dict[str, str] = {}
    parts = []
    for i, group in enumerate(groups):
        for j, tag in enumerate(group):
            params[f"g{i}t{j}"] = tag
        joins = "".join(f" JOIN dir_tags t{j} ON t{j}.tag = :g{i}t{j} AND t{j}.key = t0.key"
                        for j in range(1, len(group)))
        parts.append(f"SELECT key FROM (SELECT t0.key AS key FROM dir_tags t0{joins}"
                     f" WHERE t0.tag = :g{i}t0 AND t0.key > :after ORDER BY t0.key LIMIT :limit)")
    return " UNION ".join(parts) + " ORDER BY key LIMIT :limit", params


class SqliteDirectory:
    """The ``Directory`` Protocol on SQLite; create it with ``await SqliteDirectory.open(path)``."""

    def __init__(self, path: str, limits: DirectoryLimits) -> None:
        self.path = path
        self._limits = limits
        self._db = SqliteWorker(path, SCHEMA, name="directory", thread_name="sqlite-directory")

    @classmethod
    async def open(cls, path: str, *, limits: DirectoryLimits = DEFAULT_DIRECTORY_LIMITS) -> SqliteDirectory:
        """Open (creating it and its directory if needed) the database at ``path``."""
        directory = cls(path, limits)
        await directory._db.open("directory open")
        log.info("path=%s: sqlite directory open", path)
        return directory

    async def set_tags(self, key: str, tags: Sequence[str]) -> list[str]:
        distinct = check_tags(key, tags, self._limits)

        def replace() -> None:
            conn = self._db.connection()
            old = {tag for (tag,) in conn.execute("SELECT tag FROM dir_tags WHERE key = ?", (key,))}
            conn.executemany("DELETE FROM dir_tags WHERE tag = ? AND key = ?",
                             [(tag, key) for tag in old.difference(distinct)])
            conn.executemany("INSERT INTO dir_tags (tag, key) VALUES (?, ?)",
                             [(tag, key) for tag in distinct if tag not in old])

        await self._db.run(f"directory set tags of key {key!r}", replace, write=True)
        log.debug("key=%s: %d tags set", key, len(distinct))
        return distinct

    async def set_alias(self, key: str, alias: str) -> AliasChange:
        check_set_alias(key, alias, self._limits)

        def move() -> AliasChange:
            conn = self._db.connection()
            row = conn.execute("SELECT alias FROM dir_aliases WHERE key = ?", (key,)).fetchone()
            old: str | None = row[0] if row else None
            if not alias:
                conn.execute("DELETE FROM dir_aliases WHERE key = ?", (key,))
                return AliasChange(None, None, old)
            if old == alias:
                return AliasChange(alias, None, None)
            row = conn.execute("SELECT key FROM dir_aliases WHERE alias = ?", (alias,)).fetchone()
            holder: str | None = row[0] if row else None
            conn.execute("DELETE FROM dir_aliases WHERE key = ? OR alias = ?", (key, alias))
            conn.execute("INSERT INTO dir_aliases (alias, key) VALUES (?, ?)", (alias, key))
            return AliasChange(alias, holder, old)

        change = await self._db.run(f"directory set alias of key {key!r}", move, write=True)
        if change.moved_from is not None:
            log.info("key=%s alias=%s: alias moved from key %s", key, alias, change.moved_from)
        return change

    async def key_info(self, key: str) -> KeyInfo:
        check_key(key, self._limits.keys)

        def read() -> KeyInfo:
            conn = self._db.connection()
            tags = [tag for (tag,) in conn.execute("SELECT tag FROM dir_tags WHERE key = ? ORDER BY tag", (key,))]
            row = conn.execute("SELECT alias FROM dir_aliases WHERE key = ?", (key,)).fetchone()
            return KeyInfo(tags, row[0] if row else None)

        return await self._db.run(f"directory info of key {key!r}", read)

    async def alias_key(self, alias: str) -> str | None:
        check_alias(alias, self._limits)

        def read() -> str | None:
            row = self._db.connection().execute("SELECT key FROM dir_aliases WHERE alias = ?", (alias,)).fetchone()
            return row[0] if row else None

        return await self._db.run(f"directory lookup of alias {alias!r}", read)

    async def tag_keys(self, expr: Sequence[Sequence[str]], after: str, count: int) -> TagPage:
        groups = check_tag_query(expr, after, count, self._limits)
        sql, params = expression_sql(groups)

        def read() -> list[str]:
            rows = self._db.connection().execute(sql, {**params, "after": after, "limit": count + 1})
            return [key for (key,) in rows]

        keys = await self._db.run(f"directory tag keys of {describe(groups)}", read)
        if len(keys) > count:
            return TagPage(keys[:count], keys[count - 1])
        return TagPage(keys, None)

    async def close(self) -> None:
        if self._db.closed:
            return
        await self._db.close()
        log.info("path=%s: sqlite directory closed", self.path)
