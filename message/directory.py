"""The tag/alias directory of the message node: its limits, argument checks and the ``Directory`` Protocol.

A key has a set of tags (0..``max_tags_per_key``) and at most one alias; an alias names exactly one key (setting
alias A on K2 while K1 has it MOVES it; a new alias on K replaces K's old one). Tags and aliases are 1..64 UTF-8
bytes, printable, without whitespace or commas. A tag expression is an OR of AND-groups, a list of 1..``max_groups``
lists of 1..``max_tags_per_group`` tags: ``[["beta", "android"], ["staff"]]`` is (beta AND android) OR staff. The
keys it resolves to are distinct, in ascending UTF-8 byte order (which is also Python's ``str`` order), and paged
by a stateless cursor, the key to continue after.

Implementations: ``message.directory_redis.RedisDirectory`` (one Redis shard, one Lua script per update) and
``message.directory_sqlite.SqliteDirectory`` (standalone). Both raise ``storage.InvalidArgument`` for a bad
argument (checked here, before any I/O; nothing is changed) and ``storage.StorageUnavailable`` when the back end
cannot serve. This module does no I/O.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol, Sequence

from message.storage import DEFAULT_LIMITS, InvalidArgument, Limits, check_key


@dataclass(frozen=True)
class DirectoryLimits:
    """Bounds on what the directory accepts."""

    max_tags_per_key: int = 64
    max_tag_bytes: int = 64
    max_alias_bytes: int = 64
    max_groups: int = 16            # AND-groups in one tag expression
    max_tags_per_group: int = 8
    max_page: int = 1000            # keys in one tag_keys page (count is 1..max_page)
    keys: Limits = DEFAULT_LIMITS   # what a key (and the paging cursor) may be: the message store's rule


DEFAULT_DIRECTORY_LIMITS = DirectoryLimits()


@dataclass(frozen=True, slots=True)
class AliasChange:
    """What ``set_alias`` did: the key's alias now, the key it was taken from, the key's previous alias."""

    alias: str | None
    moved_from: str | None
    replaced: str | None


@dataclass(frozen=True, slots=True)
class KeyInfo:
    """A key's tags (sorted) and alias."""

    tags: list[str]
    alias: str | None


@dataclass(frozen=True, slots=True)
class TagPage:
    """Keys matching an expression, ascending; ``next`` is the cursor to continue after, None when no more."""

    keys: list[str]
    next: str | None


class Directory(Protocol):
    """The tags and aliases of keys."""

    async def set_tags(self, key: str, tags: Sequence[str]) -> list[str]:
        """Replace ``key``'s tags (``[]`` clears them); return them sorted."""

    async def set_alias(self, key: str, alias: str) -> AliasChange:
        """Give ``key`` the alias (moving it from another key); ``""`` removes the key's alias."""

    async def key_info(self, key: str) -> KeyInfo:
        """The key's tags and alias (empty and None for an unknown key)."""

    async def alias_key(self, alias: str) -> str | None:
        """The key that has ``alias``, or None."""

    async def tag_keys(self, expr: Sequence[Sequence[str]], after: str, count: int) -> TagPage:
        """Up to ``count`` keys > ``after`` matching ``expr``, ascending.

        A page may be shorter than ``count`` while ``next`` is not None (the back end bounds its work per call):
        the caller asks again from ``next``. ``next`` is None only when no key > the page's last matches."""

    async def close(self) -> None:
        """Release connections, threads and files."""


def _check_name(what: str, value: Any, max_bytes: int) -> None:
    if not isinstance(value, str) or not value:
        raise InvalidArgument(f"{what} must be a non-empty string")
    if not value.isprintable() or any(ch.isspace() for ch in value):
        raise InvalidArgument(f"{what} {value!r} must be printable, without whitespace")
    if "," in value:
        raise InvalidArgument(f"{what} {value!r} must not contain a comma")
    try:
        size = len(value.encode("utf-8"))
    except UnicodeEncodeError:
        raise InvalidArgument(f"{what} is not valid UTF-8") from None
    if size > max_bytes:
        raise InvalidArgument(f"{what} is {size} bytes, more than {max_bytes}")


def check_tag(tag: Any, limits: DirectoryLimits = DEFAULT_DIRECTORY_LIMITS) -> None:
    """A tag: 1..``max_tag_bytes`` UTF-8 bytes, printable, no whitespace, no comma."""
    _check_name("tag", tag, limits.max_tag_bytes)


def check_alias(alias: Any, limits: DirectoryLimits = DEFAULT_DIRECTORY_LIMITS) -> None:
    """An alias: 1..``max_alias_bytes`` UTF-8 bytes, printable, no whitespace, no comma."""
    _check_name("alias", alias, limits.max_alias_bytes)


def check_tags(key: Any, tags: Any, limits: DirectoryLimits = DEFAULT_DIRECTORY_LIMITS) -> list[str]:
    """The arguments of ``set_tags``; return the distinct tags, sorted."""
    check_key(key, limits.keys)
    if not isinstance(tags, (list, tuple)):
        raise InvalidArgument("tags must be a list of strings")
    if len(tags) > limits.max_tags_per_key:
        raise InvalidArgument(f"{len(tags)} tags, more than {limits.max_tags_per_key} per key")
    for tag in tags:
        check_tag(tag, limits)
    return sorted(set(tags))


def check_set_alias(key: Any, alias: Any, limits: DirectoryLimits = DEFAULT_DIRECTORY_LIMITS) -> None:
    """The arguments of ``set_alias``: a key, and an alias or ``""`` (remove)."""
    check_key(key, limits.keys)
    if alias != "":
        check_alias(alias, limits)


def check_expr(expr: Any, limits: DirectoryLimits = DEFAULT_DIRECTORY_LIMITS) -> list[list[str]]:
    """A tag expression: 1..``max_groups`` groups of 1..``max_tags_per_group`` tags each.

    Return it with each group's repeated tags dropped (order kept) and repeated groups dropped."""
    if not isinstance(expr, (list, tuple)) or not expr:
        raise InvalidArgument("the tag expression must be a non-empty list of groups (lists of tags)")
    if len(expr) > limits.max_groups:
        raise InvalidArgument(f"the tag expression has {len(expr)} groups, more than {limits.max_groups}")
    groups: dict[tuple[str, ...], None] = {}
    for number, group in enumerate(expr, 1):
        if not isinstance(group, (list, tuple)) or not group:
            raise InvalidArgument(f"group {number} of the tag expression must be a non-empty list of tags")
        if len(group) > limits.max_tags_per_group:
            raise InvalidArgument(f"group {number} of the tag expression has {len(group)} tags, more than "
                                  f"{limits.max_tags_per_group}")
        for tag in group:
            check_tag(tag, limits)
        groups[tuple(dict.fromkeys(group))] = None
    return [list(group) for group in groups]


def check_page(after: Any, count: Any, limits: DirectoryLimits = DEFAULT_DIRECTORY_LIMITS) -> None:
    """The paging arguments of ``tag_keys``: ``after`` is ``""`` or a key; ``count`` is 1..``max_page``."""
    if after != "":
        try:
            check_key(after, limits.keys)
        except InvalidArgument as exc:
            raise InvalidArgument(f"after: {exc}") from None
    if not isinstance(count, int) or isinstance(count, bool) or not 1 <= count <= limits.max_page:
        raise InvalidArgument(f"count must be an integer 1..{limits.max_page}, not {count!r}")


def check_tag_query(expr: Any, after: Any, count: Any,
                    limits: DirectoryLimits = DEFAULT_DIRECTORY_LIMITS) -> list[list[str]]:
    """All arguments of ``tag_keys``; return the normalized expression."""
    groups = check_expr(expr, limits)
    check_page(after, count, limits)
    return groups


def describe(expr: Sequence[Sequence[str]]) -> str:
    """An expression for a log line: ``(a AND b) OR c``."""
    return " OR ".join(f"({' AND '.join(group)})" if len(group) > 1 else group[0] for group in expr)
