"""The message store contract: the ``Storage`` Protocol, its limits, errors and argument checks.

Both back ends (``redis_storage.RedisStorage`` and ``sqlite_storage.SqliteStorage``) follow the same rules:

* ``save`` assigns the key's next mid, ``max(time_id(now), last_mid + 1)``, atomically, and stores the message
  only when ``expire > 0``. The last mid of a key outlives its messages (at least ``mid_ttl`` seconds), so mids
  stay strictly increasing across clock steps, trims, expiry and ``delete``.
* A key keeps at most ``max_per_key`` messages; older ones are trimmed. The highest mid removed by the cap or by
  expiry is remembered, so ``fetch`` reports ``trimmed`` when something newer than the asked mid was lost.
* Public (broadcast) messages follow the same rules on a sequence of their own (``save_public`` /
  ``fetch_public``), capped at ``max_public``; no key's ``fetch`` or ``delete`` reaches them.
* Every argument is checked here, before any I/O; a bad one raises ``InvalidArgument`` (a ``ValueError``),
  which the RPC layer turns into ``ERR_PARAM``. A store that cannot be reached raises ``StorageUnavailable``.

This module does no I/O and imports no back end, so ``message.client`` can re-export ``FetchResult`` cheaply.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol, Sequence

from message.mid import MAX_MID


@dataclass(frozen=True, slots=True)
class FetchResult:
    """Messages newer than the asked mid, ascending by mid, and whether some of them were lost."""

    msgs: list[tuple[int, bytes]]
    trimmed: bool


class StorageError(Exception):
    """Base class of the errors a store raises."""


class StorageUnavailable(StorageError):
    """The back end (a Redis shard, the SQLite file) could not serve the call; nothing is known to be saved."""


class InvalidArgument(StorageError, ValueError):
    """A caller's argument is out of range; raised before any I/O."""


@dataclass(frozen=True)
class Limits:
    """Bounds on what a store accepts and keeps (the ``[storage]`` section of message.conf)."""

    max_per_key: int = 64               # messages kept per key; older ones are trimmed
    max_expire: int = 30 * 24 * 3600    # longest message lifetime, seconds
    max_message_bytes: int = 64 * 1024  # largest message payload
    max_key_bytes: int = 128            # longest key, UTF-8 bytes
    mid_ttl: int = 30 * 24 * 3600       # shortest lifetime of a key's last-mid record, seconds
    max_keys_per_call: int = 1000       # most keys in one save_many
    max_public: int = 256               # public (broadcast) messages kept; older ones are trimmed


DEFAULT_LIMITS = Limits()
PUBLIC_LOG_KEY = "(public)"  # what log lines show as the key of a public (broadcast) message


class Storage(Protocol):
    """A message store: assigns mids and keeps messages per key until they expire or are trimmed."""

    async def save(self, key: str, msg: bytes, expire: int) -> int:
        """Assign ``key``'s next mid; store ``msg`` for ``expire`` seconds when ``expire > 0``. Return the mid."""

    async def save_many(self, keys: Sequence[str], msg: bytes, expire: int) -> dict[str, int]:
        """``save`` for every distinct key; return ``{key: mid}`` for the keys saved.

        A back-end failure (one Redis shard down) does not raise: its keys are left out of the result, and the
        caller reports them as failed. Bad arguments raise ``InvalidArgument`` and nothing is saved."""

    async def fetch(self, key: str, after_mid: int) -> FetchResult:
        """Messages of ``key`` with mid > ``after_mid``, ascending; expired ones are dropped."""

    async def delete(self, key: str) -> int:
        """Delete ``key``'s messages and trim mark (not its last mid); return how many messages were deleted.

        A later ``fetch`` does not report the deleted messages as ``trimmed``: deleting was the owner's choice."""

    # --- public (broadcast) messages: one sequence of their own, not visible through any key ---------------

    async def save_public(self, msg: bytes, expire: int) -> int:
        """Assign the next public mid (the rule of ``save``, on its own sequence); store ``msg`` for ``expire``
        seconds when ``expire > 0``, keeping at most ``max_public`` messages. Return the mid."""

    async def fetch_public(self, after_mid: int) -> FetchResult:
        """Public messages with mid > ``after_mid``, ascending; expired ones are dropped, losses are ``trimmed``."""

    async def close(self) -> None:
        """Release connections, threads and files."""


def check_key(key: str, limits: Limits) -> None:
    """A key is a non-empty string of at most ``max_key_bytes`` UTF-8 bytes, without control characters
    (so that a key can never forge a log line or break a Redis tool's output)."""
    if not isinstance(key, str) or not key:
        raise InvalidArgument("key must be a non-empty string")
    if not key.isprintable() and any(ch < " " or ch == "\x7f" for ch in key):
        raise InvalidArgument("key must not contain control characters")
    try:
        size = len(key.encode("utf-8"))
    except UnicodeEncodeError:
        raise InvalidArgument("key is not valid UTF-8") from None
    if size > limits.max_key_bytes:
        raise InvalidArgument(f"key is {size} bytes, more than {limits.max_key_bytes}")


def check_message(msg: bytes, expire: int, limits: Limits) -> None:
    """A message is at most ``max_message_bytes``; ``expire`` is 0..``max_expire`` seconds."""
    if not isinstance(msg, bytes):
        raise InvalidArgument("msg must be bytes")
    if len(msg) > limits.max_message_bytes:
        raise InvalidArgument(f"msg is {len(msg)} bytes, more than {limits.max_message_bytes}")
    if not isinstance(expire, int) or isinstance(expire, bool):
        raise InvalidArgument("expire must be an integer")
    if not 0 <= expire <= limits.max_expire:
        raise InvalidArgument(f"expire must be 0..{limits.max_expire} seconds, not {expire}")


def check_mid(mid: int) -> None:
    """A mid asked for by a reader is an int64 >= 0 (0 = everything)."""
    if not isinstance(mid, int) or isinstance(mid, bool):
        raise InvalidArgument("mid must be an integer")
    if not 0 <= mid <= MAX_MID:
        raise InvalidArgument(f"mid must be 0..{MAX_MID}, not {mid}")


def check_save(key: str, msg: bytes, expire: int, limits: Limits) -> None:
    """All checks of one ``save``."""
    check_key(key, limits)
    check_message(msg, expire, limits)


def check_save_many(keys: Sequence[str], msg: bytes, expire: int, limits: Limits) -> list[str]:
    """All checks of one ``save_many``; return the distinct keys in their first order."""
    if isinstance(keys, (str, bytes)) or not isinstance(keys, (list, tuple)):
        raise InvalidArgument("keys must be a list of strings")
    if len(keys) > limits.max_keys_per_call:
        raise InvalidArgument(f"{len(keys)} keys, more than {limits.max_keys_per_call} in one call")
    for key in keys:
        check_key(key, limits)
    distinct = list(dict.fromkeys(keys))
    check_message(msg, expire, limits)
    return distinct

