"""PURE model of the delivery trace: the records each role writes, and the events the trace API shows.

A record is a short list, packed with msgpack when it is stored; its first item is its kind, its second the Unix
time (float seconds) of what it records. The role that saw something records it, once, on its own clock:

========  =============================================================================================  ======
kind      layout                                                                                         by
========  =============================================================================================  ======
PUSHED    ``[1, routed_at, node, instance, saved_at, written_at, [conn, ...], [[conn, reason], ...],``   comet
          ``accepted_at, src, size, expire]`` (``accepted_at`` and ``src`` are nil without the web's meta)
ACKED     ``[3, at, conn, instance]``                                                                    comet
FETCHED   ``[4, at, src]`` (the message was in a ``/msg/get`` reply sent to ``src``)                      web
OPENED    ``[10, at, conn, node, instance, peer, proto, version]`` (a connection subscribed)             comet
CLOSED    ``[11, at, conn, instance, reason]`` (comet/stat.py ``CLOSE_*``, or migrate / fencing)         comet
FAILED    ``[12, at, reason, node, src, size, expire]`` (a push that failed before a mid existed)        web, comet
FETCHES   ``[13, at, after_mid, first_mid, last_mid, count, src]`` (a ``/msg/get`` reply)                web
DELETED   ``[14, at, count]`` (``/msg/del``)                                                             message
========  =============================================================================================  ======

One PUSHED record tells the push's whole way through the comet: accepted by the web (its time and source, from
the push's ``meta``), routed to this comet, saved by the message node (the mid it answered means the message is
stored when expire > 0: the message node assigns the mid and stores in one atomic step), written to which
connections. So a push costs one record, written by the comet; kind 2 (a separate "stored" record of the message
node) is not used. Records of kinds 1, 3, 4 belong to one message (key and mid); the others to a key's history
(mid 0). A record travels as ``[key, mid, packed record]`` (``MessageRPC.Trace``). :func:`message_events` and :func:`key_view`
turn stored records into the JSON-ready events of ``GET /msg/trace`` and ``GET /key/trace``; what they say about
a message's outcome is ``message/trace_verdict.py``. Unreadable records are skipped: the store holds what peers
sent, and one bad record must not hide the rest.
"""
from __future__ import annotations

from typing import Any, Iterable, Sequence

import msgpack

PUSHED, ACKED, FETCHED = 1, 3, 4
OPENED, CLOSED, FAILED, FETCHES, DELETED = 10, 11, 12, 13, 14
MESSAGE_KINDS = frozenset((PUSHED, ACKED, FETCHED))
KEY_KINDS = frozenset((OPENED, CLOSED, FAILED, FETCHES, DELETED))
MAX_TEXT = 200   # longest string item of a record (reasons, addresses); longer ones are cut
MAX_CONNS = 64   # connection ids kept in one PUSHED record (a key has at most max_conns_per_key)
MAX_MIDS = 128   # one FETCHES record covers a reply of at most this many messages (the store keeps 64 per key)

Record = list[Any]
Event = dict[str, Any]


def clip(text: object) -> str:
    """A record's string item: ``str(text)`` cut to MAX_TEXT characters."""
    value = text if isinstance(text, str) else str(text)
    return value if len(value) <= MAX_TEXT else value[:MAX_TEXT]


_PACKER = msgpack.Packer(use_bin_type=True)  # one Packer: packb() builds a new one per call, twice the cost


def pack(record: Record) -> bytes:
    return _PACKER.pack(record)  # type: ignore[no-any-return]


def unpack(data: bytes) -> Record | None:
    """A stored record, or None when the bytes are not a record (wrong shape, unknown kind, no time)."""
    try:
        record = msgpack.unpackb(data, raw=False, strict_map_key=False)
    except Exception:  # noqa: BLE001 - msgpack raises several types for malformed input
        return None
    if (not isinstance(record, list) or len(record) < 2 or not isinstance(record[0], int)
            or record[0] not in MESSAGE_KINDS | KEY_KINDS or not isinstance(record[1], (int, float))):
        return None
    return record


# --- what the roles record ---------------------------------------------------------------------------------

def pushed(routed_at: float, node: str, instance: str, saved_at: float, written_at: float, conns: Sequence[int],
           failed: Sequence[tuple[int, str]], meta: tuple[float, str] | None, size: int, expire: int) -> Record:
    accepted_at, src = meta if meta is not None else (None, None)
    ids = conns if len(conns) <= MAX_CONNS else conns[:MAX_CONNS]
    bad = [[conn, clip(reason)] for conn, reason in failed[:MAX_CONNS]] if failed else []
    return [PUSHED, routed_at, node, instance, saved_at, written_at, ids, bad, accepted_at, src, size, expire]


def acked(at: float, conn: int, instance: str) -> Record:
    return [ACKED, at, conn, instance]


def fetched(at: float, src: str) -> Record:
    return [FETCHED, at, clip(src)]


def opened(at: float, conn: int, node: str, instance: str, peer: str, proto: str, version: str) -> Record:
    return [OPENED, at, conn, node, instance, clip(peer), proto, clip(version)]


def closed(at: float, conn: int, instance: str, reason: str) -> Record:
    return [CLOSED, at, conn, instance, clip(reason)]


def failed(at: float, reason: str, node: str | None, src: str | None, size: int, expire: int) -> Record:
    return [FAILED, at, clip(reason), node, None if src is None else clip(src), size, expire]


def fetches(at: float, after_mid: int, mids: Sequence[int], src: str) -> Record:
    return [FETCHES, at, after_mid, mids[0] if mids else 0, mids[-1] if mids else 0, len(mids), clip(src)]


def deleted(at: float, count: int) -> Record:
    return [DELETED, at, count]


# --- what the API shows ------------------------------------------------------------------------------------

def _item(record: Record, index: int, default: Any = None) -> Any:
    return record[index] if len(record) > index else default


def _conn_ids(value: Any) -> list[int]:
    return [conn for conn in value if isinstance(conn, int)] if isinstance(value, list) else []


def _pushed_events(record: Record) -> list[Event]:
    routed_at, node, instance = record[1], _item(record, 2), _item(record, 3)
    saved_at, written_at = _item(record, 4), _item(record, 5)
    size, expire = _item(record, 10), _item(record, 11)
    events: list[Event] = []
    accepted_at = _item(record, 8)
    if isinstance(accepted_at, (int, float)):
        events.append({"at": accepted_at, "kind": "accepted", "src": _item(record, 9), "size": size,
                       "expire": expire})
    events.append({"at": routed_at, "kind": "routed", "node": node, "instance": instance})
    if isinstance(expire, int) and expire > 0 and isinstance(saved_at, (int, float)):
        events.append({"at": saved_at, "kind": "stored", "expire": expire, "until": saved_at + expire})
    else:
        events.append({"at": saved_at, "kind": "not_stored", "reason": "expire 0: for online connections only"})
    conns = _conn_ids(_item(record, 6))
    events.append({"at": written_at, "kind": "written", "node": node, "count": len(conns),
                   "conns": [{"conn": conn, "at": written_at} for conn in conns]})
    for entry in _item(record, 7) or []:
        if isinstance(entry, list) and len(entry) == 2:
            events.append({"at": written_at, "kind": "not_written", "node": node, "conn": entry[0],
                           "reason": entry[1]})
    return events


def _message_event(record: Record) -> list[Event]:
    kind, at = record[0], record[1]
    if kind == PUSHED:
        return _pushed_events(record)
    if kind == ACKED:
        return [{"at": at, "kind": "acked", "conn": _item(record, 2), "instance": _item(record, 3)}]
    return [{"at": at, "kind": "fetched", "src": _item(record, 2)}]  # FETCHED


STAGE = {"accepted": 0, "routed": 1, "stored": 2, "not_stored": 2, "written": 3, "not_written": 3}


def _order(event: Event) -> tuple[float, int]:
    at = event["at"]
    return (at if isinstance(at, (int, float)) else float("inf"), STAGE.get(event["kind"], 9))


def message_events(records: Iterable[bytes], shard: str = "", since: float = 0.0) -> list[Event]:
    """The events of one message's stored records made at or after ``since``, in time order (a pipeline stage
    first on a tie)."""
    events: list[Event] = []
    for data in records:
        record = unpack(data)
        if record is not None and record[0] in MESSAGE_KINDS and record[1] >= since:
            events.extend(_message_event(record))
    for event in events:
        if event["kind"] in ("stored", "not_stored") and shard:
            event["shard"] = shard
    events.sort(key=_order)
    return events


def key_records(records: Iterable[bytes], since: float = 0.0) -> list[Record]:
    """The readable key-history records made at or after ``since``, oldest first."""
    out = []
    for data in records:
        record = unpack(data)
        if record is not None and record[0] in KEY_KINDS and record[1] >= since:
            out.append(record)
    return out


def deletes(records: Sequence[Record]) -> list[float]:
    """When the key's stored messages were deleted (``/msg/del``), from its history."""
    return [record[1] for record in records if record[0] == DELETED]


def key_view(records: Sequence[Record]) -> dict[str, list[Event]]:
    """A key's history: connections (opened and closed paired by instance and conn id), failures, fetches,
    deletes; each list oldest first."""
    connections: dict[tuple[Any, Any], Event] = {}
    failures: list[Event] = []
    fetch_list: list[Event] = []
    delete_list: list[Event] = []
    for record in records:
        kind, at = record[0], record[1]
        if kind == OPENED:
            connections[(_item(record, 4), _item(record, 2))] = {
                "conn": _item(record, 2), "node": _item(record, 3), "instance": _item(record, 4),
                "peer": _item(record, 5), "proto": _item(record, 6), "version": _item(record, 7),
                "opened": at, "closed": None, "reason": None}
        elif kind == CLOSED:
            entry = connections.setdefault((_item(record, 3), _item(record, 2)), {
                "conn": _item(record, 2), "node": None, "instance": _item(record, 3), "peer": None, "proto": None,
                "version": None, "opened": None})
            entry["closed"], entry["reason"] = at, _item(record, 4)
        elif kind == FAILED:
            failures.append({"at": at, "kind": "push_failed", "reason": _item(record, 2), "node": _item(record, 3),
                             "src": _item(record, 4), "size": _item(record, 5), "expire": _item(record, 6)})
        elif kind == FETCHES:
            fetch_list.append({"at": at, "after": _item(record, 2), "first": _item(record, 3),
                               "last": _item(record, 4), "count": _item(record, 5), "src": _item(record, 6)})
        else:
            delete_list.append({"at": at, "count": _item(record, 2)})
    return {"connections": list(connections.values()), "failures": failures, "fetches": fetch_list,
            "deletes": delete_list}
