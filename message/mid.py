"""Message ids and the stored member format (pure: no I/O).

A mid is an int64 in gopush-cluster's unit, 100 ns since the Unix epoch: ``time_id(time.time_ns())`` is about
1.7e16 today. A Redis score is a double and holds integers exactly only up to 2**53 (~9e15), so two neighbouring
mids can share one score. The exact mid therefore lives at the front of the sorted-set member::

    member = <mid as MID_DIGITS zero-padded decimal digits><msgpack {"msg": bytes, "expire": unix seconds}>

Members with equal scores sort by their bytes, and zero-padded digits sort like the numbers they spell, so the
set is ordered by the exact mid. ``expire`` is the last Unix second in which the message is still delivered.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import msgpack

MAX_MID = (1 << 63) - 1       # mids are int64
MID_DIGITS = len(str(MAX_MID))  # 19: every int64 >= 0 fits in a fixed-width decimal prefix
NS_PER_TIME_ID = 100           # gopush-cluster's unit: 100 ns
NS_PER_SECOND = 1_000_000_000


class MemberError(ValueError):
    """A stored member is not ``<digits><msgpack map>``: the store holds data this code did not write."""


@dataclass(frozen=True, slots=True)
class StoredMessage:
    """One stored message: its mid, payload and the last Unix second it is delivered in."""

    mid: int
    msg: bytes
    expire_at: int

    def expired(self, now_s: int) -> bool:
        return now_s > self.expire_at


def time_id(ns: int) -> int:
    """The mid for a wall-clock time given in ns since the epoch (gopush-cluster's ``timeid``)."""
    return ns // NS_PER_TIME_ID


def expire_at(now_ns: int, expire: int) -> int:
    """The last Unix second a message saved at ``now_ns`` for ``expire`` seconds is still delivered in.

    Rounding down ``now`` and keeping the message through the whole last second gives every message at least
    ``expire`` seconds of life (and less than one more).
    """
    return now_ns // NS_PER_SECOND + expire


def mid_prefix(mid: int) -> bytes:
    """``mid`` as MID_DIGITS ASCII digits, zero-padded: byte order equals numeric order."""
    if not 0 <= mid <= MAX_MID:
        raise ValueError(f"mid {mid} is not an int64 >= 0")
    return b"%0*d" % (MID_DIGITS, mid)


def parse_mid_prefix(data: bytes) -> int:
    """The mid spelled by the first MID_DIGITS bytes of ``data``."""
    head = data[:MID_DIGITS]
    if len(head) != MID_DIGITS or not head.isdigit():
        raise MemberError(f"member does not start with {MID_DIGITS} digits: {bytes(head)!r}")
    return int(head)


def encode_payload(msg: bytes, expire_at: int) -> bytes:
    """The part of a member after the mid prefix (the Lua save script adds the prefix)."""
    packed: bytes = msgpack.packb({"msg": msg, "expire": expire_at}, use_bin_type=True)
    return packed


def encode_member(mid: int, msg: bytes, expire_at: int) -> bytes:
    """The full sorted-set member of one message."""
    return mid_prefix(mid) + encode_payload(msg, expire_at)


def decode_member(member: bytes) -> StoredMessage:
    """Parse a member written by ``encode_member``; raise ``MemberError`` if it is not one."""
    mid = parse_mid_prefix(member)
    try:
        body: Any = msgpack.unpackb(member[MID_DIGITS:], raw=False)
    except (ValueError, TypeError, msgpack.UnpackException) as exc:
        raise MemberError(f"mid={mid}: payload is not msgpack: {exc}") from None
    if not isinstance(body, dict):
        raise MemberError(f"mid={mid}: payload is not a map")
    msg, expire = body.get("msg"), body.get("expire")
    if not isinstance(msg, bytes) or not isinstance(expire, int) or isinstance(expire, bool):
        raise MemberError(f"mid={mid}: payload lacks bytes 'msg' or int 'expire'")
    return StoredMessage(mid, msg, expire)
