"""Validation of every web parameter and request body; each failure is a ParamError naming the problem.

PURE: no tornado or asyncio I/O, so that the limits are tested without a server. The handlers read raw
strings/bytes from the request and hand them here.
"""
from __future__ import annotations

import json
import re
from enum import IntEnum
from typing import Any
from urllib.parse import parse_qs, unquote

from web.ret import ParamError

INT64_MAX = (1 << 63) - 1
MAX_UINT_DIGITS = 19
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
_JSON_WS = b" \t\r\n"


class Proto(IntEnum):
    """The ``proto`` / ``p`` parameter of /server/get."""

    WEBSOCKET = 1
    TCP = 2


def parse_query(query: str) -> dict[str, str]:
    """The parameters of a query string, the first value of each (as in Go), percent- and plus-decoded.

    Splits and decodes exactly as tornado's ``parse_qs_bytes(query, keep_blank_values=True)`` (``&`` only; a
    name without ``=`` has the value ""), but keeps the text in latin-1 so that every byte survives:
    :func:`query_text` turns a value into the UTF-8 the client sent. Only the first value of a name is kept.
    """
    args: dict[str, str] = {}
    if not query:
        return args
    for part in query.split("&"):
        if not part:
            continue
        name, _, value = part.partition("=")
        if "%" in name or "+" in name:
            name = unquote(name.replace("+", " "), encoding="latin-1")
        if name in args:
            continue
        if "%" in value or "+" in value:
            value = unquote(value.replace("+", " "), encoding="latin-1")
        args[name] = value
    return args


def query_text(value: str, name: str) -> str:
    """A value of :func:`parse_query` as the UTF-8 text the client sent; ParamError if it is not UTF-8."""
    if value.isascii():
        return value
    try:
        return value.encode("latin-1").decode("utf-8")
    except UnicodeError:
        raise ParamError(f"{name} is not UTF-8") from None


def parse_key(value: str, max_bytes: int, name: str = "key") -> str:
    """A subscriber key: 1..max_bytes bytes of UTF-8, no control characters (C0, DEL: they could forge log lines)."""
    if not value:
        raise ParamError(f"{name} is missing")
    if value.isascii():
        size = len(value)
    else:
        try:
            size = len(value.encode("utf-8"))
        except UnicodeEncodeError:  # a lone surrogate, from a JSON escape such as "\ud800"
            raise ParamError(f"{name} is not valid UTF-8") from None
    if size > max_bytes:
        raise ParamError(f"{name} is {size} bytes, more than {max_bytes}")
    if not value.isprintable() and _CONTROL.search(value):
        raise ParamError(f"{name} contains control characters")
    return value


def parse_uint(value: str, name: str, maximum: int = INT64_MAX) -> int:
    """A decimal integer 0..maximum written with ASCII digits only (no sign, space or underscore)."""
    if not value:
        raise ParamError(f"{name} is missing")
    if len(value) > MAX_UINT_DIGITS or not value.isascii() or not value.isdigit():
        raise ParamError(f"{name} is not a non-negative integer")
    number = int(value)
    if number > maximum:
        raise ParamError(f"{name} {number} is above {maximum}")
    return number


def parse_mid(value: str, name: str = "mid") -> int:
    """The last message id the client has (0 = everything stored)."""
    return parse_uint(value, name)


def parse_expire(value: str, max_expire: int) -> int:
    """A message lifetime in seconds, 0..max_expire (0 = deliver to online connections only)."""
    return parse_uint(value, "expire", max_expire)


def parse_proto(value: str, name: str = "proto") -> Proto:
    """1 = WebSocket, 2 = TCP."""
    if value == "1":
        return Proto.WEBSOCKET
    if value == "2":
        return Proto.TCP
    raise ParamError(f"{name} must be 1 (websocket) or 2 (tcp)")


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


def parse_message(body: bytes, max_bytes: int) -> bytes:
    """A message: one valid JSON text in UTF-8, at most max_bytes; returned without surrounding whitespace."""
    if len(body) > max_bytes:
        raise ParamError(f"message is {len(body)} bytes, more than {max_bytes}")
    message = body.strip(_JSON_WS)
    if not message:
        raise ParamError("message is empty")
    try:
        json.loads(message.decode("utf-8"), parse_constant=_reject_constant)
    except UnicodeDecodeError:
        raise ParamError("message is not UTF-8") from None
    except (ValueError, RecursionError):
        raise ParamError("message is not valid JSON") from None
    return message


def parse_keys(text: str, max_bytes: int, max_count: int) -> list[str]:
    """A comma-separated key list: no empty key, each ≤ max_bytes, ≤ max_count keys; duplicates dropped."""
    if not text:
        raise ParamError("k is missing")
    parts = text.split(",")
    if len(parts) > max_count:
        raise ParamError(f"{len(parts)} keys, more than {max_count}")
    keys = [parse_key(part, max_bytes, "a key in k") for part in parts]
    return list(dict.fromkeys(keys))


def parse_multi_body(body: bytes, max_bytes: int, max_key_bytes: int, max_keys: int) -> tuple[bytes, list[str]]:
    """The /push/mprivate body ``{"m": "<message JSON>", "k": "k1,k2"}`` -> (message, unique keys)."""
    if len(body) > max_bytes:
        raise ParamError(f"body is {len(body)} bytes, more than {max_bytes}")
    try:
        doc = json.loads(body.decode("utf-8"), parse_constant=_reject_constant)
    except UnicodeDecodeError:
        raise ParamError("body is not UTF-8") from None
    except (ValueError, RecursionError):
        raise ParamError("body is not valid JSON") from None
    if not isinstance(doc, dict):
        raise ParamError("body is not a JSON object")
    message, keys = doc.get("m"), doc.get("k")
    if not isinstance(message, str) or not message:
        raise ParamError("m must be a non-empty string holding the message JSON")
    if not isinstance(keys, str):
        raise ParamError("k must be a string of comma-separated keys")
    try:
        raw = message.encode("utf-8")
    except UnicodeEncodeError:  # a lone surrogate, from a JSON escape such as "\ud800"
        raise ParamError("m is not valid UTF-8") from None
    return parse_message(raw, max_bytes), parse_keys(keys, max_key_bytes, max_keys)


def parse_form_key(body: bytes, max_key_bytes: int) -> str:
    """The ``key`` field of an application/x-www-form-urlencoded body (read whatever the Content-Type)."""
    try:
        fields = parse_qs(body.decode("utf-8"), keep_blank_values=True, errors="strict")
    except (UnicodeDecodeError, ValueError):
        raise ParamError("body is not a valid form") from None
    values = fields.get("key", [])
    return parse_key(values[-1] if values else "", max_key_bytes)
