"""The trace store contract: ``TraceStore``, its ``[trace]`` config, and the batching rules both back ends share.

A message node keeps the delivery trace next to the messages: in Redis (``trace_redis.RedisTraceStore``, on the
key's shard) when its store is Redis, in a SQLite file (``trace_sqlite.SqliteTraceStore``) when it is SQLite
(standalone mode). Both keep two lists per subscriber key K, oldest record first:

* its messages' records (pushes, acks, fetches), each tagged with its mid: the newest ``max_message_records``;
* its history (connections opened and closed, failed pushes, fetch summaries, deletes): the newest
  ``max_history_records``.

So a key's trace never holds more than ``max_message_records + max_history_records`` records of at most
``max_event_bytes`` each. Time bounds it too: a record older than ``retention`` seconds is not shown, and the
store drops it (Redis: a list expires ``retention`` seconds after its last write; SQLite: a sweep every
``sweep_interval`` deletes older rows). Per push this is one record appended to one list: the cheapest layout
found (a list per message with an index per key cost Redis three times the CPU per push).

Records arrive in batches (``write``) of ``(key, mid, packed record)``, mid 0 for the key's history;
:func:`group` orders a batch by list and applies the caps before any I/O, so that one append per list suffices.
A message record is stored as its mid in ``MID_DIGITS`` zero-padded digits followed by the packed record.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Protocol, Sequence

from message.mid import MID_DIGITS
from thirdparty.confload import ConfigError
from thirdparty.trace_buffer import TraceBufferConfig

TraceRecord = tuple[str, int, bytes]  # key, mid (0: the key's history), packed record
MAX_LIST_RECORDS = 4096               # the largest cap a list may have


@dataclass(frozen=True)
class MessageTraceConfig(TraceBufferConfig):
    """``[trace]`` of a message node: the trace store's limits and its buffer."""

    retention: int = 3 * 24 * 3600      # seconds a record is kept
    max_message_records: int = 512     # per key: records of its messages, the newest kept
    max_history_records: int = 256     # per key: records of its history, the newest kept
    max_event_bytes: int = 1024         # largest record accepted from MessageRPC.Trace
    max_records_per_call: int = 4096    # most records in one MessageRPC.Trace call
    sqlite_path: str = ""               # SQLite trace file; "" = traces.db beside [storage] sqlite_path
    sweep_interval: float = 60.0        # SQLite: seconds between sweeps of records older than the retention

    def check(self) -> None:
        super().check()
        if not 1 <= self.retention <= 365 * 24 * 3600:
            raise ConfigError("retention must be 1..31536000 seconds")
        for name in ("max_message_records", "max_history_records"):
            if not 1 <= getattr(self, name) <= MAX_LIST_RECORDS:
                raise ConfigError(f"{name} must be 1..{MAX_LIST_RECORDS}")
        for name in ("max_event_bytes", "max_records_per_call"):
            if getattr(self, name) < 1:
                raise ConfigError(f"{name} must be >= 1")
        if self.sweep_interval <= 0:
            raise ConfigError("sweep_interval must be > 0")

    def sqlite_file(self, storage_path: str) -> str:
        """Where the SQLite trace store lives."""
        return self.sqlite_path or os.path.join(os.path.dirname(storage_path), "traces.db")


@dataclass(frozen=True, slots=True)
class Group:
    """The records of one list in a batch, in arrival order, cut to the list's cap; message records carry their
    mid (see :func:`tag`)."""

    key: str
    history: bool
    records: list[bytes]


class TraceStore(Protocol):
    """Where a message node keeps traces (see the module docstring)."""

    async def write(self, records: Sequence[TraceRecord]) -> None:
        """Append a batch; raises ``message.storage.StorageUnavailable`` when the store cannot be reached."""

    async def message_records(self, key: str) -> list[bytes]:
        """The key's message records, oldest first, each tagged with its mid (:func:`untag`)."""

    async def history_records(self, key: str) -> list[bytes]:
        """The key's history records, oldest first."""

    def shard_of(self, key: str) -> str:
        """The name of the shard (Redis) or file (SQLite) that holds ``key``'s trace and messages."""

    async def close(self) -> None:
        """Release connections, threads, files."""


def tag(mid: int, record: bytes) -> bytes:
    """A message record as stored: the mid in MID_DIGITS digits, then the record."""
    return b"%019d%b" % (mid, record)


def untag(stored: bytes) -> tuple[int, bytes] | None:
    """(mid, record) of a stored message record; None when it does not start with MID_DIGITS digits."""
    head = stored[:MID_DIGITS]
    if len(head) < MID_DIGITS or not head.isdigit():
        return None
    return int(head), stored[MID_DIGITS:]


def group(records: Sequence[TraceRecord], *, max_message_records: int, max_history_records: int) -> list[Group]:
    """One :class:`Group` per list, in order of first appearance, each with the newest records that fit its cap
    (the older ones would be trimmed by the store anyway)."""
    lists: dict[tuple[str, bool], list[bytes]] = {}
    for key, mid, record in records:
        item = tag(mid, record) if mid else record
        bucket = lists.get((key, not mid))
        if bucket is None:
            lists[(key, not mid)] = [item]
        else:
            bucket.append(item)
    groups = []
    for (key, history), items in lists.items():
        cap = max_history_records if history else max_message_records
        groups.append(Group(key, history, items[-cap:] if len(items) > cap else items))
    return groups
