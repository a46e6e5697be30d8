"""PURE: what happened to one message, in one word and one plain sentence, from its trace events.

:func:`verdict` reads the events of ``trace_model.message_events`` plus two facts from the message store: whether
the message is still stored (``present``) and when the key's messages were deleted (``deleted_at``). The states,
strongest evidence first:

===================  ====================================================================================
``acked``            a client acknowledged it (an ``ack`` frame with its mid)
``fetched``          it was in a ``/msg/get`` reply (the client was offline, or fetched again)
``delivered``        written to at least one connection; no acknowledgement came back
``stored_not_fetched``  nobody was online; it is stored and has not been fetched yet
``expired``          stored, never delivered or fetched, and its ``expire`` has passed
``trimmed``          stored, never delivered or fetched, and pushed out by newer messages (the per-key cap)
``deleted``          stored, never delivered or fetched, and deleted with ``/msg/del``
``failed``           nobody was online (or every write failed) and it was not stored (``expire`` 0)
``unknown``          no trace of it (never pushed to this key, or older than the trace retention), or its
                     trace is incomplete
===================  ====================================================================================

``expired``, ``trimmed`` and ``deleted`` are derived here (the store removes messages without telling anyone)
and are appended to the events: a stored message that is gone was ``deleted`` if the key was deleted between its
storing and its expiry, else ``expired`` once its expire time has passed (whether the cap removed it first is not
recorded), else ``trimmed``. Times in the text are UTC.
"""
from __future__ import annotations

from datetime import datetime, timezone
from typing import Any, Sequence

from message.trace_model import Event

STATES = ("acked", "fetched", "delivered", "stored_not_fetched", "expired", "trimmed", "deleted", "failed",
          "unknown")


def when(at: Any) -> str:
    """``2024-05-01T10:00:00.123Z`` for a Unix time; "an unknown time" for anything else."""
    if not isinstance(at, (int, float)):
        return "an unknown time"
    try:
        stamp = datetime.fromtimestamp(at, timezone.utc)
    except (OverflowError, OSError, ValueError):
        return "an unknown time"
    return stamp.strftime("%Y-%m-%dT%H:%M:%S.") + f"{stamp.microsecond // 1000:03d}Z"


def _first(events: Sequence[Event], *kinds: str) -> Event | None:
    return next((event for event in events if event["kind"] in kinds), None)


def _written(events: Sequence[Event]) -> tuple[list[Any], Event | None]:
    conns: list[Any] = []
    first: Event | None = None
    for event in events:
        if event["kind"] == "written":
            first = first or event
            conns.extend(conn["conn"] for conn in event["conns"] if conn["conn"] not in conns)
    return conns, first


def _failures(events: Sequence[Event]) -> str:
    reasons = [f"connection {event['conn']}: {event['reason']}" for event in events if event["kind"] == "not_written"]
    return f" (not written: {'; '.join(reasons)})" if reasons else ""


def _result(state: str, text: str) -> dict[str, str]:
    return {"state": state, "text": text}


def verdict(events: list[Event], *, present: bool | None, now: float,
            deleted_at: Sequence[float] = ()) -> dict[str, str]:
    """The message's state and a sentence saying why; may append a derived expired/trimmed/deleted event."""
    if not events:
        return _result("unknown", "No trace of this message: it was never pushed to this key, or its trace is "
                                  "older than the trace retention.")
    acks = [event for event in events if event["kind"] == "acked"]
    fetches = [event for event in events if event["kind"] == "fetched"]
    conns, written = _written(events)
    online = (f"written to {len(conns)} connection(s) on {written['node']} at {when(written['at'])}"
              if conns and written is not None else "")
    if acks:
        first = acks[0]
        more = f" ({len({event['conn'] for event in acks})} connection(s) acknowledged it)" if len(acks) > 1 else ""
        return _result("acked", f"Acknowledged by connection {first['conn']} at {when(first['at'])}{more}; "
                                f"{online or 'it was written to the client'}.")
    if fetches:
        first = fetches[0]
        also = f"; it was also {online}" if online else ""
        return _result("fetched", f"Fetched with /msg/get by {first['src']} at {when(first['at'])}{also}.")
    if online:
        return _result("delivered", f"Delivered: {online}; no client acknowledged it (a client acknowledges "
                                    "only if it sends ack frames).")
    return _not_delivered(events, present=present, now=now, deleted_at=deleted_at)


def _not_delivered(events: list[Event], *, present: bool | None, now: float,
                   deleted_at: Sequence[float]) -> dict[str, str]:
    """Nobody took it online: what became of it in the store."""
    store = _first(events, "stored", "not_stored")
    routed = _first(events, "routed")
    failures = _failures(events)
    if _first(events, "written") is None:
        nobody = "no write to a connection was recorded"
    else:
        nobody = "no connection took it" + failures if failures else "no connection of the key was online"
    if store is None:
        if routed is None:
            return _result("unknown", "Its trace is incomplete: it was traced, but neither its push nor its "
                                      "storing was recorded (trace records were lost).")
        return _result("unknown", f"Pushed through {routed['node']} at {when(routed['at'])} and {nobody}; whether "
                                  "it was stored is not known (the message node's record was lost).")
    if store["kind"] == "not_stored":
        return _result("failed", f"Not delivered: {nobody}, and it was pushed with expire 0, so it was not "
                                 "stored for an offline fetch.")
    until = store["until"]
    if present:
        return _result("stored_not_fetched", f"Not delivered yet: {nobody} when it was pushed; it is stored until "
                                             f"{when(until)} and has not been fetched.")
    if present is None:
        return _result("stored_not_fetched", f"Not delivered yet: {nobody} when it was pushed; it should be stored "
                                             f"until {when(until)} (the store could not be checked).")
    removed = [at for at in deleted_at if store["at"] <= at <= until]
    if removed:
        events.append({"at": removed[0], "kind": "deleted"})
        return _result("deleted", f"Not delivered: {nobody}; it was stored, then deleted with /msg/del at "
                                  f"{when(removed[0])} before anyone fetched it.")
    if now > until:
        events.append({"at": until, "kind": "expired"})
        return _result("expired", f"Not delivered: {nobody}; it was stored, and nobody fetched it before it "
                                  f"expired at {when(until)}.")
    events.append({"at": None, "kind": "trimmed"})
    return _result("trimmed", f"Not delivered: {nobody}; it was stored, then removed by the per-key cap (newer "
                              "messages pushed it out) before anyone fetched it.")
