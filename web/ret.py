"""Ret codes of the web API, one exception class per code, and the one envelope writer (JSON or JSONP).

PURE: no tornado or asyncio I/O. Every web response body is built by :func:`render`::

    {"ret": CODE, "msg": "ok", "data": {...}}          Content-Type: application/json;charset=utf-8
    CB({"ret": CODE, "msg": "ok", "data": {...}})      Content-Type: application/javascript;charset=utf-8

``data`` is present only when there is something to return. Raw message JSON (already validated when it
was pushed) is inserted verbatim through :class:`RawJSON`, so a message is never decoded and re-encoded.
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
_JS_LINE_TERMINATORS = {ord("\u2028"): "\\u2028", ord("\u2029"): "\\u2029"}


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
    """A request that ends with a non-zero ret; ``reason`` is for the log, never sent to the client."""

    ret: ClassVar[Ret] = Ret.INTERNAL

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


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


def render(ret: Ret, data: dict[str, Any] | None = None, callback: str | None = None,
           msg: str | None = None) -> tuple[bytes, str]:
    """The response body and its Content-Type. ``callback`` must already have passed check_callback;
    ``msg`` replaces the ret's standard text (used for HTTP-level errors such as "not found")."""
    envelope: dict[str, Any] = {"ret": int(ret), "msg": msg if msg is not None else RET_MSG[ret]}
    if data is not None:
        envelope["data"] = data
    text = dumps(envelope)
    if callback is None:
        return text.encode("utf-8"), JSON_CONTENT_TYPE
    body = f"{callback}({text.translate(_JS_LINE_TERMINATORS)})"
    return body.encode("utf-8"), JSONP_CONTENT_TYPE
