"""What both SQLite files of a message node (the message store and the trace store) do the same way: open a
WAL-mode connection with a schema, and run a body in one write transaction. Called on each store's worker thread.
"""
from __future__ import annotations

import os
import sqlite3
from typing import Callable, TypeVar

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
