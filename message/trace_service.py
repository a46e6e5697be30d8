"""MessageTracer: the message node's part of the delivery trace, behind ``MessageRPC.Trace / MsgTrace / KeyTrace``.

* It records what only the message node sees: a key's messages deleted (``DelPrivate``). That a message was
  stored is in the comet's record of its push (the mid the comet got back means it was, when expire > 0), so a
  push costs the message node no record of its own.
* It takes the batches comet and web nodes send (``intake``): each record ``[key, mid, packed record]`` is checked
  (key as the store checks keys, mid 0..int64, 1..``max_event_bytes`` of bytes); bad ones are dropped, counted and
  logged once per call.
* Its own records and the received ones wait in one ``TraceBuffer`` and reach the trace store in batches of up to
  ``max_batch`` (the batches of several comets and web nodes share one store write: a write costs the message
  node about 100 µs of redis-py overhead whatever its size).
* It answers the trace queries: the events of one message with its verdict (``message/trace_verdict.py``, which
  also needs to know whether the message is still stored: one ``fetch`` from the message store), and a key's
  history with the verdict of each of its traced messages. Pending records are written first, so a query sees
  everything this node has received; records older than the retention are left out.
"""
from __future__ import annotations

import logging
import time
from typing import Any, Callable

from message.mid import MAX_MID
from message.storage import InvalidArgument, Limits, Storage, StorageUnavailable, check_key
from message.trace_model import Record, deleted, deletes, key_records, key_view, message_events, pack
from message.trace_store import MessageTraceConfig, TraceRecord, TraceStore, untag
from message.trace_verdict import verdict
from thirdparty.trace_buffer import TraceBuffer

log = logging.getLogger(__name__)

MAX_KEY_MESSAGES = 100  # messages listed by a key's trace, newest first


class MessageTracer:
    """See the module docstring. ``storage`` is the message store (for "is it still stored?")."""

    def __init__(self, store: TraceStore, storage: Storage, config: MessageTraceConfig, limits: Limits, *,
                 clock: Callable[[], float] = time.time) -> None:
        self.store = store
        self._storage = storage
        self._config = config
        self._limits = limits
        self._clock = clock
        self.buffer = TraceBuffer("message", self._write, flush_interval=config.flush_interval,
                                  max_batch=config.max_batch, max_pending=config.max_pending)
        self.rejected = 0  # records refused by intake()

    # --- recording -----------------------------------------------------------------------------------------

    def deleted(self, key: str, count: int) -> None:
        self.buffer.add((key, 0, pack(deleted(self._clock(), count))))

    def intake(self, records: Any) -> int:
        """Queue the valid records of a ``MessageRPC.Trace`` batch; return how many were taken."""
        if not isinstance(records, list):
            raise InvalidArgument("records must be a list")
        if len(records) > self._config.max_records_per_call:
            raise InvalidArgument(f"{len(records)} records, more than {self._config.max_records_per_call}")
        taken = 0
        problem = ""
        for item in records:
            why = self._problem(item)
            if why:
                problem = problem or why
                continue
            self.buffer.add(item)  # the decoded [key, mid, record] as it is
            taken += 1
        if problem:
            self.rejected += len(records) - taken
            log.warning("trace: %d of %d record(s) refused, e.g. %s", len(records) - taken, len(records), problem)
        return taken

    def _problem(self, item: Any) -> str:
        if not isinstance(item, (list, tuple)) or len(item) != 3:
            return "a record is not [key, mid, bytes]"
        key, mid, record = item
        try:
            check_key(key, self._limits)
        except InvalidArgument as exc:
            return str(exc)
        if not isinstance(mid, int) or isinstance(mid, bool) or not 0 <= mid <= MAX_MID:
            return f"key={key} mid {mid!r:.30}: not an int64 >= 0"
        if not isinstance(record, bytes) or not 0 < len(record) <= self._config.max_event_bytes:
            return f"key={key} mid={mid}: record is not 1..{self._config.max_event_bytes} bytes"
        return ""

    async def _write(self, batch: list[TraceRecord]) -> None:
        await self.store.write(batch)

    # --- queries -------------------------------------------------------------------------------------------

    async def _read(self, key: str) -> tuple[dict[int, list[bytes]], list[Record], float]:
        """The key's message records by mid and its history, within the retention; and now."""
        await self.buffer.flush()
        now = self._clock()
        by_mid: dict[int, list[bytes]] = {}
        for stored in await self.store.message_records(key):
            tagged = untag(stored)
            if tagged is not None:
                by_mid.setdefault(tagged[0], []).append(tagged[1])
        since = now - self._config.retention
        return by_mid, key_records(await self.store.history_records(key), since), now

    async def message_trace(self, key: str, mid: int) -> dict[str, Any]:
        """``{"key", "mid", "events": [...], "verdict": {"state", "text"}}``."""
        check_key(key, self._limits)
        if not isinstance(mid, int) or isinstance(mid, bool) or not 1 <= mid <= MAX_MID:
            raise InvalidArgument(f"mid must be 1..{MAX_MID}")
        by_mid, history, now = await self._read(key)
        events = message_events(by_mid.get(mid, ()), self.store.shard_of(key), now - self._config.retention)
        present = None
        if any(event["kind"] == "stored" for event in events):
            present = mid in await self._stored_mids(key, mid)
        result = verdict(events, present=present, now=now, deleted_at=deletes(history))
        log.debug("key=%s mid=%d: trace of %d event(s), %s", key, mid, len(events), result["state"])
        return {"key": key, "mid": mid, "events": events, "verdict": result}

    async def key_trace(self, key: str) -> dict[str, Any]:
        """``{"key", "connections", "messages": [{"mid", "at", "state", "text"}] newest first (at most
        MAX_KEY_MESSAGES), "failures", "fetches", "deletes"}``."""
        check_key(key, self._limits)
        by_mid, history, now = await self._read(key)
        since = now - self._config.retention
        traced = [(mid, message_events(by_mid[mid], since=since)) for mid in sorted(by_mid, reverse=True)]
        traced = [(mid, events) for mid, events in traced if events][:MAX_KEY_MESSAGES]
        stored_mids = [mid for mid, events in traced if any(event["kind"] == "stored" for event in events)]
        present = await self._stored_mids(key, min(stored_mids)) if stored_mids else set()
        removed = deletes(history)
        messages = []
        for mid, events in traced:
            result = verdict(events, present=mid in present, now=now, deleted_at=removed)
            messages.append({"mid": mid, "at": events[0]["at"], **result})
        return {"key": key, **key_view(history), "messages": messages}

    async def _stored_mids(self, key: str, lowest: int) -> set[int]:
        """The mids of ``key`` >= ``lowest`` that the message store still holds (expired ones excluded)."""
        try:
            result = await self._storage.fetch(key, lowest - 1)
        except StorageUnavailable as exc:
            log.warning("key=%s: trace query cannot check the message store: %s", key, exc)
            raise
        return {msg_mid for msg_mid, _ in result.msgs}

    async def close(self) -> None:
        """Write what is pending (for up to a second), then close the trace store."""
        await self.buffer.close(1.0)
        await self.store.close()
