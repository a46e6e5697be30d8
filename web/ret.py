"""Ret codes of the web API, one exception class per code, and the envelope writer (JSON or JSONP).

PURE: no tornado or asyncio I/O. Every web response body is an envelope::

    {"ret": CODE, "msg": "ok", "data": {...}}          Content-Type: application/json;charset=utf-8
    CB({"ret": CODE, "msg": "ok", "data": {...}})      Content-Type: application/javascript;charset=utf-8

``data`` is present only when there is something to return. :func:`envelope` wraps ``data`` given as JSON
bytes (the handlers build it from pre-encoded fragments: no dict, no ``json.dumps`` per reply on the hot
paths); :func:`render` takes a dict and encodes it with :func:`dumps`. Raw message JSON (already validated
when it was pushed) is inserted verbatim (:class:`RawJSON` in a dict), so a message is never decoded and
re-encoded.
"""
from __future__ import annotations

import json
import re
from dataclasses import dataclass
from enum import IntEnum
from typing import Any, ClassVar

JSON_CONTENT_TYPE = "application/json;charset=utf-8"
JSONP_CONTENT_TYPE = "application/javascript;charset=utf-8"

# A JavaScript identifier path such as `jQuery1910_123` or `app.cb$1`; 64 characters at most.
CALLBACK_RE = re.compile(r"[A-Za-z_$][A-Za-z0-9_$.]{0,63}\Z")
# Legal inside JSON strings but line terminators in pre-ES2019 JavaScript: escaped in JSONP bodies only.
# In UTF-8 they are E2 80 A8 / E2 80 A9, byte sequences no other character's encoding contains.
_LS, _PS = "\u2028".encode(), "\u2029".encode()
_LINE_TERMINATOR_LEAD = _LS[:2]


class Ret(IntEnum):
    """The ``ret`` field of every response (gopush-cluster's codes)."""

    OK = 0
    NO_NODE = 1001
    PARAM = 65534
    INTERNAL = 65535


RET_MSG: dict[Ret, str] = {
    Ret.OK: "ok",
    Ret.NO_NODE: "no node",
    Ret.PARAM: "param error",
    Ret.INTERNAL: "internal error",
}


class RetError(Exception):
    """A request that ends with a non-zero ret; ``reason`` is for the log, never sent to the client. ``msg``, when
    given, replaces the ret's standard text in the envelope (the admin endpoints that say what is wrong)."""

    ret: ClassVar[Ret] = Ret.INTERNAL

    def __init__(self, reason: str, msg: str | None = None) -> None:
        super().__init__(reason)
        self.reason = reason
        self.msg = msg


class ParamError(RetError):
    """A missing, malformed or out-of-limits parameter or body (the client's fault)."""

    ret = Ret.PARAM


class NoNodeError(RetError):
    """No comet node serves the key, or the node has no address for the asked protocol."""

    ret = Ret.NO_NODE


class InternalError(RetError):
    """A comet or message node could not be reached, or failed (our fault)."""

    ret = Ret.INTERNAL


_ERROR_BY_CODE: dict[int, type[RetError]] = {cls.ret: cls for cls in (ParamError, NoNodeError, InternalError)}


def error_for_code(code: int, reason: str) -> RetError:
    """The RetError for an error code sent by an inner node; unknown codes count as internal errors."""
    return _ERROR_BY_CODE.get(code, InternalError)(reason)


def check_callback(name: str) -> str | None:
    """The JSONP callback to use: None for an empty name; ParamError for a name that is not allowed."""
    if not name:
        return None
    if CALLBACK_RE.match(name) is None:
        raise ParamError(f"bad callback name ({len(name)} chars)")
    return name


@dataclass(frozen=True, slots=True)
class RawJSON:
    """A JSON text inserted as is into a rendered body (a stored message, validated when pushed)."""

    text: str


def json_string(text: str) -> bytes:
    """``text`` as a compact JSON string literal, UTF-8 kept (not \\u-escaped)."""
    return json.dumps(text, ensure_ascii=False).encode("utf-8")


def dumps(value: Any) -> str:
    """Compact JSON for dicts, lists, scalars and RawJSON values (UTF-8 kept, not \\u-escaped)."""
    if isinstance(value, RawJSON):
        return value.text
    if isinstance(value, dict):
        items = (json.dumps(str(k), ensure_ascii=False) + ":" + dumps(v) for k, v in value.items())
        return "{" + ",".join(items) + "}"
    if isinstance(value, (list, tuple)):
        return "[" + ",".join(dumps(v) for v in value) + "]"
    return json.dumps(value, ensure_ascii=False, allow_nan=False)


def _head(ret: Ret, msg: str) -> bytes:
    return b'{"ret":%d,"msg":%b' % (int(ret), json_string(msg))


_HEADS: dict[Ret, bytes] = {ret: _head(ret, text) for ret, text in RET_MSG.items()}


def envelope(ret: Ret, data: bytes | None = None, callback: str | None = None,
             msg: str | None = None) -> tuple[bytes, str]:
    """The response body around ``data`` (the JSON text of the data object, or None) and its Content-Type.

    ``callback`` must already have passed check_callback; ``msg`` replaces the ret's standard text (used for
    HTTP-level errors such as "not found")."""
    head = _HEADS[ret] if msg is None else _head(ret, msg)
    body = head + b"}" if data is None else b"".join((head, b',"data":', data, b"}"))
    if callback is None:
        return body, JSON_CONTENT_TYPE
    if _LINE_TERMINATOR_LEAD in body:
        body = body.replace(_LS, b"\\u2028").replace(_PS, b"\\u2029")
    return b"".join((callback.encode("ascii"), b"(", body, b")")), JSONP_CONTENT_TYPE


def render(ret: Ret, data: dict[str, Any] | None = None, callback: str | None = None,
           msg: str | None = None) -> tuple[bytes, str]:
    """:func:`envelope` for ``data`` given as a dict (encoded with :func:`dumps`)."""
    return envelope(ret, None if data is None else dumps(data).encode("utf-8"), callback, msg)
