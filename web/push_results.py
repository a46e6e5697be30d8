"""PURE: the typed results of the server SDK (``web/push_client.py``), each read from the ``data`` of an admin API
reply (docs/openapi.yaml, /tmp/s3-spec.md section 3).

Every ``from_data`` checks the fields it reads and raises :class:`ServerError` (as ret 65535) for a reply that
does not have them: a web node that answers ret 0 with the wrong shape is a server fault, never a silent ``None``.
Outcomes (``wait=``): ``acked``, ``written``, ``offline`` or ``timeout`` (``web/push_wait.py``).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from comet.subscriber_api import ServerError


def _int(data: dict[str, Any], name: str) -> int:
    value = data.get(name)
    if type(value) is not int:
        raise ServerError(f"reply without an integer {name!r}: {data!r:.80}")
    return int(value)


def _str(data: dict[str, Any], name: str) -> str:
    value = data.get(name)
    if not isinstance(value, str):
        raise ServerError(f"reply without a string {name!r}: {data!r:.80}")
    return value


def _opt_str(data: dict[str, Any], name: str) -> str | None:
    value = data.get(name)
    if value is not None and not isinstance(value, str):
        raise ServerError(f"reply with a {name!r} that is neither a string nor null: {data!r:.80}")
    return value


def _strs(data: dict[str, Any], name: str, default: list[str] | None = None) -> list[str]:
    value = data.get(name, default)
    if not isinstance(value, list) or not all(isinstance(item, str) for item in value):
        raise ServerError(f"reply without a list of strings {name!r}: {data!r:.80}")
    return list(value)


def _dicts(data: dict[str, Any], name: str) -> list[dict[str, Any]]:
    value = data.get(name, [])
    if not isinstance(value, list) or not all(isinstance(item, dict) for item in value):
        raise ServerError(f"reply without a list of objects {name!r}: {data!r:.80}")
    return list(value)


def _outcomes(data: dict[str, Any]) -> dict[str, str]:
    value = data.get("outcomes", {})
    if not isinstance(value, dict) or not all(isinstance(item, str) for item in value.values()):
        raise ServerError(f"reply with malformed outcomes: {data!r:.80}")
    return dict(value)


@dataclass(frozen=True, slots=True)
class PushResult:
    """A push to one key: the message's ``mid``, the connections it was written to (0 = offline), with ``wait``
    the ``outcome``, and for :meth:`PushClient.push_alias` the ``key`` the alias named."""

    mid: int
    online: int
    outcome: str | None = None
    key: str | None = None

    @classmethod
    def from_data(cls, data: dict[str, Any]) -> PushResult:
        return cls(_int(data, "mid"), _int(data, "online"), _opt_str(data, "outcome"), _opt_str(data, "key"))


@dataclass(frozen=True, slots=True)
class MultiPushResult:
    """A push to many keys: the keys that were not pushed, in request order (empty on full success); with
    ``wait`` the outcome of every other key."""

    failed_keys: list[str]
    outcomes: dict[str, str] = field(default_factory=dict)

    @classmethod
    def from_data(cls, data: dict[str, Any]) -> MultiPushResult:
        return cls(_strs(data, "fk"), _outcomes(data))


@dataclass(frozen=True, slots=True)
class TagPushResult:
    """A push to the keys of a tag expression: how many ``keys`` it resolved to, the connections written to,
    the keys that failed, and with ``wait`` the outcome of every other key."""

    keys: int
    online: int
    failed_keys: list[str]
    outcomes: dict[str, str] = field(default_factory=dict)

    @classmethod
    def from_data(cls, data: dict[str, Any]) -> TagPushResult:
        return cls(_int(data, "keys"), _int(data, "online"), _strs(data, "fk"), _outcomes(data))


@dataclass(frozen=True, slots=True)
class BroadcastResult:
    """A public message (``push_all``): its public ``mid``, the connections it is being written to on the comets
    that answered, and the names of the comets that failed (their clients fetch it on their next catch-up)."""

    mid: int
    online: int
    failed_comets: list[str]

    @classmethod
    def from_data(cls, data: dict[str, Any]) -> BroadcastResult:
        return cls(_int(data, "mid"), _int(data, "online"), _strs(data, "fc"))


@dataclass(frozen=True, slots=True)
class DeleteResult:
    """``deleted`` stored messages; ``closed`` connections (None when the comet could not be asked)."""

    deleted: int
    closed: int | None


@dataclass(frozen=True, slots=True)
class KeyTags:
    """A key's tags after ``set_tags``, sorted."""

    key: str
    tags: list[str]

    @classmethod
    def from_data(cls, data: dict[str, Any]) -> KeyTags:
        return cls(_str(data, "key"), _strs(data, "tags"))


@dataclass(frozen=True, slots=True)
class AliasChange:
    """What ``set_alias`` did: the key's ``alias`` now (None: removed), the key it was taken from
    (``moved_from``) and the key's previous alias (``replaced``), each None when there was none."""

    key: str
    alias: str | None
    moved_from: str | None
    replaced: str | None

    @classmethod
    def from_data(cls, data: dict[str, Any]) -> AliasChange:
        return cls(_str(data, "key"), _opt_str(data, "alias"), _opt_str(data, "moved_from"),
                   _opt_str(data, "replaced"))


@dataclass(frozen=True, slots=True)
class KeyInfo:
    """A key's tags (sorted) and alias (None when it has none)."""

    key: str
    tags: list[str]
    alias: str | None

    @classmethod
    def from_data(cls, data: dict[str, Any]) -> KeyInfo:
        return cls(_str(data, "key"), _strs(data, "tags"), _opt_str(data, "alias"))


@dataclass(frozen=True, slots=True)
class TagKeysPage:
    """One page of the keys a tag expression names, ascending; ``next`` is the ``after`` of the next page (None
    when there are no more)."""

    keys: list[str]
    next: str | None

    @classmethod
    def from_data(cls, data: dict[str, Any]) -> TagKeysPage:
        return cls(_strs(data, "keys"), _opt_str(data, "next"))


@dataclass(frozen=True, slots=True)
class MessageTrace:
    """What happened to one message (``/msg/trace``): its events in time order and the verdict (``state`` in
    one word: acked, fetched, delivered, stored_not_fetched, expired, trimmed, deleted, failed, unknown;
    ``text``: one plain sentence)."""

    key: str
    mid: int
    events: list[dict[str, Any]]
    state: str
    text: str

    @classmethod
    def from_data(cls, data: dict[str, Any]) -> MessageTrace:
        verdict = data.get("verdict")
        if not isinstance(verdict, dict):
            raise ServerError(f"trace reply without a verdict: {data!r:.80}")
        return cls(_str(data, "key"), _int(data, "mid"), _dicts(data, "events"), _str(verdict, "state"),
                   _str(verdict, "text"))


@dataclass(frozen=True, slots=True)
class KeyTrace:
    """A key's trace (``/key/trace``): connections, recent messages with their verdicts, failed pushes, fetches,
    deletes (each a list of the objects docs/openapi.yaml describes)."""

    key: str
    connections: list[dict[str, Any]]
    messages: list[dict[str, Any]]
    failures: list[dict[str, Any]]
    fetches: list[dict[str, Any]]
    deletes: list[dict[str, Any]]

    @classmethod
    def from_data(cls, data: dict[str, Any]) -> KeyTrace:
        return cls(_str(data, "key"), _dicts(data, "connections"), _dicts(data, "messages"),
                   _dicts(data, "failures"), _dicts(data, "fetches"), _dicts(data, "deletes"))
