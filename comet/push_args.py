"""PURE argument checks of the comet's pushes (before any I/O): keys, the message, expire.

A bad argument raises ``RpcError(ERR_PARAM, reason)`` (CometRPC answers 65534), except in :func:`key_problem`,
which returns the reason so that ``PushPrivates`` can fail one key and push the others.
"""
from __future__ import annotations

import json
from typing import Any

from thirdparty.rpc_codec import ERR_PARAM, RpcError


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


def check_key_type(key: object) -> None:
    if not isinstance(key, str):
        raise RpcError(ERR_PARAM, f"key must be a string, not {type(key).__name__}")


def key_problem(key: str, max_key_bytes: int) -> str:
    """Why ``key`` is not a valid subscriber key ("" when it is)."""
    if not key:
        return "key is empty"
    if not key.isprintable() and any(ch < " " or ch == "\x7f" for ch in key):
        return "key contains control characters"
    size = len(key.encode("utf-8", "surrogatepass"))
    if size > max_key_bytes:
        return f"key is {size} bytes, more than {max_key_bytes}"
    return ""


def check_message(msg: object, expire: object, max_message_bytes: int) -> None:
    """``msg`` is 1..max_message_bytes of UTF-8 JSON (NaN and Infinity refused); ``expire`` an int >= 0."""
    if not isinstance(msg, bytes):
        raise RpcError(ERR_PARAM, f"msg must be bytes, not {type(msg).__name__}")
    if not msg or len(msg) > max_message_bytes:
        raise RpcError(ERR_PARAM, f"msg is {len(msg)} bytes, not 1..{max_message_bytes}")
    if not isinstance(expire, int) or isinstance(expire, bool) or expire < 0:
        raise RpcError(ERR_PARAM, f"expire must be an integer >= 0, not {expire!r:.40}")
    try:
        json.loads(msg.decode("utf-8"), parse_constant=_reject_constant)
    except UnicodeDecodeError:
        raise RpcError(ERR_PARAM, "msg is not UTF-8") from None
    except (ValueError, RecursionError):
        raise RpcError(ERR_PARAM, "msg is not valid JSON") from None
