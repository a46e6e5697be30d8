"""PURE: the checks of the tag and alias endpoints' inputs (tags, aliases, tag expressions, their bodies).

The rules are the message node's (``docs/openapi.yaml``, tags and aliases): a tag or an alias is 1..64 bytes of
UTF-8, printable, without whitespace or comma; a key holds at most 64 tags; a tag expression is an OR of
AND-groups, a JSON list of 1..16 groups of 1..8 tags each (``[["beta","android"],["staff"]]`` = beta AND android,
or staff). The web checks them before any call so that a bad request changes nothing and costs no RPC. Every
failure is a :class:`web.ret.ParamError` whose text says what is wrong; the tag and alias endpoints send that text
as the envelope's ``msg`` (see :func:`named`).
"""
from __future__ import annotations

import json
from typing import Any

from web.params import parse_message
from web.ret import ParamError

MAX_NAME_BYTES = 64         # longest tag or alias, UTF-8 bytes
MAX_TAGS_PER_KEY = 64       # most tags one key holds
MAX_GROUPS = 16             # most AND-groups in an expression
MAX_GROUP_TAGS = 8          # most tags in one AND-group
MAX_PAGE = 1000             # most keys one GET /tag/keys page (and one resolve step of /push/tags) returns
DEFAULT_PAGE = 100

Expression = list[list[str]]


def named(exc: ParamError) -> ParamError:
    """``exc`` with its reason as the envelope's ``msg`` (the tag and alias endpoints say what is wrong)."""
    if exc.msg is None:
        exc.msg = exc.reason
    return exc


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


def _json(data: bytes | str, what: str) -> Any:
    """One JSON document (NaN / Infinity refused); ParamError naming ``what`` when it is not."""
    try:
        text = data.decode("utf-8") if isinstance(data, bytes) else data
        return json.loads(text, parse_constant=_reject_constant)
    except UnicodeDecodeError:
        raise ParamError(f"{what} is not UTF-8") from None
    except (ValueError, RecursionError):
        raise ParamError(f"{what} is not valid JSON") from None


def parse_name(value: Any, what: str) -> str:
    """A tag or an alias: a string of 1..64 UTF-8 bytes, printable, no whitespace, no comma."""
    if not isinstance(value, str):
        raise ParamError(f"{what} must be a string")
    if not value:
        raise ParamError(f"{what} is empty")
    try:
        size = len(value.encode("utf-8"))
    except UnicodeEncodeError:  # a lone surrogate, from a JSON escape such as "\ud800"
        raise ParamError(f"{what} is not valid UTF-8") from None
    if size > MAX_NAME_BYTES:
        raise ParamError(f"{what} is {size} bytes, more than {MAX_NAME_BYTES}")
    if "," in value or not value.isprintable() or any(char.isspace() for char in value):
        raise ParamError(f"{what} {value[:MAX_NAME_BYTES]!r} holds a comma, whitespace or a control character")
    return value


def parse_tag_list(body: bytes, max_bytes: int) -> list[str]:
    """The POST /key/tags body: a JSON list of 0..64 tags (``[]`` clears); duplicates dropped, order kept."""
    if len(body) > max_bytes:
        raise ParamError(f"body is {len(body)} bytes, more than {max_bytes}")
    doc = _json(body, "body")
    if not isinstance(doc, list):
        raise ParamError("body must be a JSON list of tags")
    tags = list(dict.fromkeys(parse_name(item, f"tag #{index + 1}") for index, item in enumerate(doc)))
    if len(tags) > MAX_TAGS_PER_KEY:
        raise ParamError(f"{len(tags)} tags, more than {MAX_TAGS_PER_KEY} per key")
    return tags


def parse_alias_param(value: str, present: bool) -> str:
    """The ``alias`` parameter of POST /key/alias: an alias, or "" to remove the key's alias (must be sent)."""
    if not present:
        raise ParamError("alias is missing (send alias= to remove the key's alias)")
    return value and parse_name(value, "alias")


def check_expression(doc: Any) -> Expression:
    """A decoded tag expression: 1..16 groups, each a list of 1..8 tags; duplicate tags in a group dropped."""
    if not isinstance(doc, list) or not doc:
        raise ParamError("tags must be a non-empty JSON list of groups, e.g. [[\"beta\",\"android\"],[\"staff\"]]")
    if len(doc) > MAX_GROUPS:
        raise ParamError(f"tags has {len(doc)} groups, more than {MAX_GROUPS}")
    groups: Expression = []
    for number, group in enumerate(doc, 1):
        if not isinstance(group, list) or not group:
            raise ParamError(f"tags group #{number} must be a non-empty list of tags")
        if len(group) > MAX_GROUP_TAGS:
            raise ParamError(f"tags group #{number} has {len(group)} tags, more than {MAX_GROUP_TAGS}")
        groups.append(list(dict.fromkeys(parse_name(tag, f"a tag of group #{number}") for tag in group)))
    return groups


def parse_expression(text: str) -> Expression:
    """The ``tags`` parameter of GET /tag/keys: the expression as JSON text."""
    if not text:
        raise ParamError("tags is missing")
    return check_expression(_json(text, "tags"))


def parse_count(value: str) -> int:
    """The ``count`` parameter of GET /tag/keys: 1..1000, 100 when absent."""
    if not value:
        return DEFAULT_PAGE
    if len(value) > 4 or not value.isascii() or not value.isdigit() or not 1 <= int(value) <= MAX_PAGE:
        raise ParamError(f"count must be an integer 1..{MAX_PAGE}")
    return int(value)


def parse_tags_push_body(body: bytes, max_bytes: int) -> tuple[bytes, Expression]:
    """The POST /push/tags body ``{"m": "<message JSON as a string>", "tags": [[...], ...]}`` -> (message, expr)."""
    if len(body) > max_bytes:
        raise ParamError(f"body is {len(body)} bytes, more than {max_bytes}")
    doc = _json(body, "body")
    if not isinstance(doc, dict):
        raise ParamError("body is not a JSON object")
    message = doc.get("m")
    if not isinstance(message, str) or not message:
        raise ParamError("m must be a non-empty string holding the message JSON")
    if "tags" not in doc:
        raise ParamError("tags is missing")
    expression = check_expression(doc["tags"])
    try:
        raw = message.encode("utf-8")
    except UnicodeEncodeError:  # a lone surrogate, from a JSON escape such as "\ud800"
        raise ParamError("m is not valid UTF-8") from None
    return parse_message(raw, max_bytes), expression
