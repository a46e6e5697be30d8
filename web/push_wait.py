"""PURE: the ``wait`` and ``timeout`` parameters of a push, the ``meta`` the web hands the comet, and the outcome
fields of the reply (docs/openapi.yaml, ``/push/private`` and ``/push/mprivate``).

``wait=written`` answers once the message was written to the key's connections (or to none: ``offline``);
``wait=acked`` waits, up to ``timeout`` seconds (default ``[limits] push_wait_default``, at most
``push_wait_max``), for one of those connections to acknowledge the mid. The outcome of a key is ``acked``,
``written``, ``offline`` (no connection took it; stored for a later fetch when expire > 0) or ``timeout``. The
wait itself happens on the comet (``comet/ack_waiters.py``); the web's call to it is given the wait time on top
of its usual RPC timeout.
"""
from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Any, Mapping

from web.ret import ParamError

WAITS = ("acked", "written")
SECONDS_RE = re.compile(r"[0-9]{1,4}(\.[0-9]{1,3})?\Z")


@dataclass(frozen=True, slots=True)
class PushWait:
    """What a push waits for, and for how long at most."""

    until: str
    timeout: float


def parse_wait(wait: str, timeout: str, default: float, maximum: float) -> PushWait | None:
    """The push's wait (None without ``wait``); ParamError for a bad value or a ``timeout`` without ``wait``."""
    if not wait:
        if timeout:
            raise ParamError("timeout is only valid with wait")
        return None
    if wait not in WAITS:
        raise ParamError(f"wait must be {' or '.join(WAITS)}")
    if not timeout:
        return PushWait(wait, default)
    if not SECONDS_RE.match(timeout):
        raise ParamError("timeout is not a number of seconds (digits, up to 3 decimals)")
    seconds = float(timeout)
    if not 0 < seconds <= maximum:
        raise ParamError(f"timeout {seconds:g} is not in (0, {maximum:g}] seconds")
    return PushWait(wait, seconds)


def push_meta(accepted_at: float | None, src: str, wait: PushWait | None) -> dict[str, Any]:
    """The ``meta`` param of CometRPC.PushPrivate(s): the accepted time and source (when tracing), the wait."""
    meta: dict[str, Any] = {}
    if accepted_at is not None:
        meta["at"] = accepted_at
        meta["src"] = src
    if wait is not None:
        meta["wait"] = wait.until
        meta["timeout"] = wait.timeout
    return meta


def outcomes_json(outcomes: Mapping[str, str], keys: list[str]) -> bytes:
    """``{"key": "outcome", ...}`` in request order, for the keys that have one."""
    ordered = {key: outcomes[key] for key in keys if key in outcomes}
    return json.dumps(ordered, ensure_ascii=False, separators=(",", ":")).encode("utf-8")
