"""PURE client side of the web node's HTTP API (docs/openapi.yaml): errors, messages, envelopes.

No sockets, no event loop. Shared by the subscriber SDK (``comet/subscriber.py``) and the server SDK
(``web/push_client.py``):

* the error classes, one per ret code (:class:`NoNodeError` 1001, :class:`BadParameterError` 65534,
  :class:`ServerError` 65535), :class:`AuthError` for HTTP 401 and :class:`TransportError` when the web node
  cannot be reached or answers something that is not HTTP; all are :class:`PushClusterError`;
* :func:`parse_envelope`: ``{"ret", "msg", "data"}`` -> ``data``, or the error for its ret / HTTP status;
* :class:`Message` and :func:`parse_message` / :func:`parse_fetch`: a message as a comet frame or a
  ``/1/msg/get`` item. ``Message.raw`` is the pushed JSON **byte for byte** in both cases (the comet and the
  web insert it verbatim; the parser records where each ``msg`` value starts and ends instead of re-encoding
  it), so a message reads the same whether it came live or from a fetch.
"""
from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from typing import Any, Callable, ClassVar

from thirdparty.confload import ConfigError, parse_address

RET_OK = 0
RET_NO_NODE = 1001
RET_PARAM = 65534
RET_INTERNAL = 65535
GID_PRIVATE = 0
GID_PUBLIC = 1

_DECODER = json.JSONDecoder()
_SPACE = re.compile(r"[ \t\n\r]*")


class PushClusterError(Exception):
    """Any failure of a call to a pushcluster web node."""


class TransportError(PushClusterError):
    """The web node could not be reached, the connection broke, or the answer was not HTTP."""


class RequestTimeout(TransportError):
    """No complete answer within the timeout (a push may or may not have been applied)."""


class ApiError(PushClusterError):
    """The web node answered with an error: ``ret`` (None when the body had none) and the HTTP ``status``
    (0 when the check failed in this client, before any request)."""

    default_ret: ClassVar[int | None] = None

    def __init__(self, message: str, *, ret: int | None = None, status: int = 200) -> None:
        super().__init__(message)
        self.message = message
        self.ret = ret if ret is not None else self.default_ret
        self.status = status


class NoNodeError(ApiError):
    """ret 1001: no comet node serves the key (or has no address for the protocol)."""

    default_ret = RET_NO_NODE


class BadParameterError(ApiError):
    """ret 65534: a missing, malformed or out-of-limits parameter or body."""

    default_ret = RET_PARAM


class ServerError(ApiError):
    """ret 65535 (a comet or message node could not be reached, or failed), an HTTP 5xx, or a reply that is
    not a pushcluster envelope."""

    default_ret = RET_INTERNAL


class AuthError(ApiError):
    """HTTP 401: the admin token is missing or wrong."""

    default_ret = RET_PARAM


_ERROR_BY_RET: dict[int, type[ApiError]] = {RET_NO_NODE: NoNodeError, RET_PARAM: BadParameterError,
                                            RET_INTERNAL: ServerError}


def error_for(ret: int, message: str, status: int = 200) -> ApiError:
    """The ApiError subclass for a ret code (an unknown code gives a plain ApiError)."""
    return _ERROR_BY_RET.get(ret, ApiError)(message, ret=ret, status=status)


def _envelope_error(status: int, body: bytes) -> ApiError:
    if status == 401:
        return AuthError("unauthorized: missing or wrong admin token", status=status)
    if status == 400:
        return BadParameterError("HTTP 400: request refused unread (body too large?)", status=status)
    return ServerError(f"HTTP {status}: not a pushcluster reply: {body[:60]!r}", status=status)


def check_ret(status: int, doc: Any, body: bytes) -> dict[str, Any]:
    """``doc`` (a decoded body) checked as an envelope: the envelope, or the error it carries."""
    if status == 401:
        raise _envelope_error(status, body)
    if not isinstance(doc, dict) or type(doc.get("ret")) is not int:
        raise _envelope_error(status, body)
    ret: int = doc["ret"]
    if ret != RET_OK:
        msg = doc.get("msg")
        raise error_for(ret, msg if isinstance(msg, str) else f"ret {ret}", status)
    if status != 200:
        raise ServerError(f"HTTP {status} with ret 0", ret=None, status=status)
    return doc


def parse_envelope(status: int, body: bytes) -> dict[str, Any]:
    """``data`` of a successful reply (``{}`` when it had none); the error for anything else."""
    try:
        doc = json.loads(body)
    except ValueError:
        raise _envelope_error(status, body) from None
    data = check_ret(status, doc, body).get("data", {})
    if not isinstance(data, dict):
        raise ServerError(f"reply data is not an object: {body[:60]!r}", status=status)
    return data


def parse_server(data: dict[str, Any]) -> tuple[str, int]:
    """``(host, port)`` of a ``/1/server/get`` reply's data."""
    server = data.get("server")
    if not isinstance(server, str):
        raise ServerError(f"server/get reply without a server address: {data!r:.80}")
    try:
        return parse_address(server)
    except ConfigError as exc:
        raise ServerError(f"server/get reply with a bad address {server!r:.80}: {exc}") from None


# -- messages ------------------------------------------------------------------------------------------------

@dataclass(frozen=True, slots=True)
class Message:
    """One message for ``key``: its ``mid``, ``gid`` (0 private, 1 public), the pushed JSON exactly as the
    back end sent it (``raw``) and that JSON decoded (``value``). ``fetched`` is True when it came from
    ``/1/msg/get`` rather than live from the comet."""

    key: str
    mid: int
    gid: int
    raw: bytes
    value: Any
    fetched: bool = False


@dataclass(frozen=True, slots=True)
class FetchPage:
    """One ``/1/msg/get`` reply: messages after the asked mid, ascending; ``trimmed`` when older ones were
    removed (cap or expiry) before this fetch, i.e. the client has a gap it cannot fill. ``public`` and
    ``ptrimmed``: the same for the public messages (gid 1) after the asked ``p`` (empty when ``p`` was not sent)."""

    messages: list[Message]
    trimmed: bool
    public: list[Message] = field(default_factory=list)
    ptrimmed: bool = False


def _skip(text: str, pos: int) -> int:
    match = _SPACE.match(text, pos)
    return match.end() if match else pos


def _members(text: str, pos: int, on_member: Callable[[str, int], int]) -> int:
    """Walk the JSON object at ``pos``: ``on_member(name, value_pos)`` reads each value and returns where it
    ends; the position after the object."""
    pos = _skip(text, pos)
    if text[pos:pos + 1] != "{":
        raise ValueError(f"expected an object at {pos}")
    pos = _skip(text, pos + 1)
    if text[pos:pos + 1] == "}":
        return pos + 1
    while True:
        name, pos = _DECODER.raw_decode(text, pos)
        if not isinstance(name, str):
            raise ValueError(f"expected a member name at {pos}")
        pos = _skip(text, pos)
        if text[pos:pos + 1] != ":":
            raise ValueError(f"expected ':' at {pos}")
        pos = _skip(text, on_member(name, _skip(text, pos + 1)))
        separator = text[pos:pos + 1]
        if separator == "}":
            return pos + 1
        if separator != ",":
            raise ValueError(f"expected ',' or '}}' at {pos}")
        pos = _skip(text, pos + 1)


def _value(text: str, pos: int, into: dict[str, Any], name: str) -> int:
    value, end = _DECODER.raw_decode(text, pos)
    into[name] = value
    return int(end)


def _message_at(key: str, text: str, pos: int, fetched: bool, gid: int = GID_PRIVATE) -> tuple[Message, int]:
    """The message object ``{"msg": ..., "mid": N, "gid": G}`` at ``pos`` and the position after it."""
    fields: dict[str, Any] = {}
    span: list[int] = []

    def member(name: str, start: int) -> int:
        end = _value(text, start, fields, name)
        if name == "msg":
            span[:] = [start, end]
        return end

    end = _members(text, pos, member)
    mid, gid = fields.get("mid"), fields.get("gid", gid)
    if type(mid) is not int or mid < 0 or type(gid) is not int or not span:
        raise ValueError("message without msg, a valid mid or gid")
    return Message(key, mid, gid, text[span[0]:span[1]].encode("utf-8"), fields["msg"], fetched), end


def parse_message(key: str, data: bytes) -> Message:
    """A message frame from a comet (new JSON form). ValueError when it is not one."""
    try:
        text = data.decode("utf-8")
        message, end = _message_at(key, text, 0, False)
    except RecursionError:
        raise ValueError("message nested too deeply") from None
    if _skip(text, end) != len(text):
        raise ValueError("data after the message object")
    return message


def parse_fetch(key: str, status: int, body: bytes) -> FetchPage:
    """A ``/1/msg/get`` reply; the ApiError it carries, or ServerError when it cannot be read."""
    try:
        text = body.decode("utf-8")
        envelope: dict[str, Any] = {}
        page: dict[str, Any] = {"msgs": [], "trimmed": False, "pmsgs": [], "ptrimmed": False}

        def top(name: str, start: int) -> int:
            return _members(text, start, data_member) if name == "data" else _value(text, start, envelope, name)

        def data_member(name: str, start: int) -> int:
            if name in ("msgs", "pmsgs"):
                return _messages(start, page[name], GID_PUBLIC if name == "pmsgs" else GID_PRIVATE)
            return _value(text, start, page, name)

        def _messages(start: int, into: list[Message], gid: int) -> int:
            if text[start:start + 1] != "[":
                raise ValueError("msgs is not a list")
            pos = _skip(text, start + 1)
            if text[pos:pos + 1] == "]":
                return pos + 1
            while True:
                message, pos = _message_at(key, text, pos, True, gid)
                into.append(message)
                pos = _skip(text, pos)
                if text[pos:pos + 1] == "]":
                    return pos + 1
                if text[pos:pos + 1] != ",":
                    raise ValueError(f"expected ',' or ']' at {pos}")
                pos = _skip(text, pos + 1)

        if _skip(text, _members(text, 0, top)) != len(text):
            raise ValueError("data after the envelope")
    except (ValueError, RecursionError) as exc:   # JSONDecodeError and UnicodeDecodeError are ValueErrors
        if status != 200:
            raise _envelope_error(status, body) from None
        raise ServerError(f"unreadable msg/get reply ({exc}): {body[:60]!r}", status=status) from None
    check_ret(status, envelope, body)
    return FetchPage(page["msgs"], page.get("trimmed") is True, page["pmsgs"], page.get("ptrimmed") is True)
