"""The vocabulary of the ZooKeeper adapter: session states, its error, and sequential znode names.

:Status: used by ``thirdparty/zk.py`` and ``thirdparty/zk_recipes.py`` (import them from ``thirdparty.zk``).

Pure apart from naming kazoo's two retryable exceptions. A sequential znode is ``<token>_<10-digit sequence>``:
``sequence_of`` reads the counter ZooKeeper appended, ``by_sequence`` orders names by it, and ``lowest_valid``
is the "lowest sequence whose data is usable" rule that decides which comet of a name is active.
"""
from __future__ import annotations

import logging
from typing import Any, Awaitable, Callable, Iterable, Mapping, TypeVar

from kazoo.exceptions import ConnectionLoss, SessionExpiredError

log = logging.getLogger("thirdparty.zk")

T = TypeVar("T")

CONNECTED, SUSPENDED, LOST = "connected", "suspended", "lost"
SEQUENCE_DIGITS = 10   # ZooKeeper appends a 10-digit counter to a sequential znode's name
TOKEN_SEPARATOR = "_"
RETRY_BASE = 0.1       # seconds before the first retry of a failed registration or watch read
RETRY_MAX = 2.0

StateListener = Callable[[str], None]
SnapshotCallback = Callable[[dict[str, Any]], "Awaitable[None] | None"]


class ZkUnavailable(ConnectionError):
    """ZooKeeper could not be reached in time, or the session is closed.

    A ConnectionError, so that a node that cannot start for it exits with one log line and no traceback.
    """


# Failures that a retry after reconnecting can cure.
RETRYABLE: tuple[type[BaseException], ...] = (ConnectionLoss, SessionExpiredError, ZkUnavailable)


def sequence_of(child: str) -> int | None:
    """The sequence number ZooKeeper appended to a sequential znode's name, or None for another name."""
    digits = child[-SEQUENCE_DIGITS:]
    if len(digits) == SEQUENCE_DIGITS and digits.isascii() and digits.isdigit():
        return int(digits)
    return None


def by_sequence(children: Iterable[str]) -> list[str]:
    """The sequential znode names among ``children``, lowest sequence first (other names are left out)."""
    numbered = [(seq, child) for child in children if (seq := sequence_of(child)) is not None]
    return [child for _seq, child in sorted(numbered)]


def lowest_valid(children: Mapping[str, bytes], parse: Callable[[bytes], T], where: str = "") -> tuple[str, T] | None:
    """The lowest-sequence child whose data ``parse`` accepts (a ValueError skips a child, logged), or None."""
    for child in by_sequence(children):
        try:
            return child, parse(children[child])
        except ValueError as exc:
            log.warning("znode %s/%s: %s; ignored", where, child, exc)
    return None
