"""MessagePack-RPC wire codec: frame encoders and an incremental, bounded decoder.

:Status: used by ``thirdparty/rpc_server.py`` and ``thirdparty/rpc_client.py``; no I/O, no event loop.

The three standard frames are msgpack arrays::

    request   [REQUEST=0,  msgid, method, params]
    response  [RESPONSE=1, msgid, error, result]
    notify    [NOTIFY=2,   method, params]

``msgid`` is a uint32 and ``params`` an array. Encoding uses ``use_bin_type=True`` and decoding ``raw=False``, so
strings come back as ``str`` and message payloads as ``bytes``. An error travels as ``error = [code, message]``
with the public ret codes below; ``error`` is nil on success.

:class:`Decoder` is fed whatever the socket returned (any split, several frames at once) and returns the complete
frames. It never buffers more than ``max_frame_size`` bytes of an unfinished frame: a longer frame, or anything
that is not one of the frames above, raises :class:`RpcProtocolError`, after which the connection must be closed.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Sequence

import msgpack

REQUEST = 0
RESPONSE = 1
NOTIFY = 2

ERR_NOT_FOUND = 1001
ERR_PARAM = 65534
ERR_INTERNAL = 65535

MAX_MSGID = (1 << 32) - 1
DEFAULT_MAX_FRAME_SIZE = 1 << 20

_REQUEST_LEN = 4
_RESPONSE_LEN = 4
_NOTIFY_LEN = 3


class RpcError(Exception):
    """Raised by a handler to send the error reply ``[code, message]``."""

    def __init__(self, code: int, message: str) -> None:
        super().__init__(code, message)
        self.code = code
        self.message = message

    def __str__(self) -> str:
        return f"[{self.code}] {self.message}"


class RpcProtocolError(ValueError):
    """The peer sent bytes that are not a valid MessagePack-RPC frame; close the connection."""


@dataclass(frozen=True, slots=True)
class Request:
    msgid: int
    method: str
    params: list[Any]


@dataclass(frozen=True, slots=True)
class Response:
    msgid: int
    error: Any
    result: Any


@dataclass(frozen=True, slots=True)
class Notify:
    method: str
    params: list[Any]


Frame = Request | Response | Notify


def _pack(obj: list[Any]) -> bytes:
    packed: bytes = msgpack.packb(obj, use_bin_type=True)
    return packed


def _check_msgid(msgid: int) -> None:
    if isinstance(msgid, bool) or not isinstance(msgid, int) or not 0 <= msgid <= MAX_MSGID:
        raise ValueError(f"msgid {msgid!r} is not a uint32")


def encode_request(msgid: int, method: str, params: Sequence[Any]) -> bytes:
    """``[0, msgid, method, params]``; raises TypeError/ValueError/OverflowError for values msgpack cannot encode."""
    _check_msgid(msgid)
    return _pack([REQUEST, msgid, method, list(params)])


def encode_response(msgid: int, error: Any, result: Any) -> bytes:
    """``[1, msgid, error, result]``; ``error`` is None on success, else ``[code, message]``."""
    _check_msgid(msgid)
    return _pack([RESPONSE, msgid, error, result])


def encode_error(msgid: int, code: int, message: str) -> bytes:
    """An error response ``[1, msgid, [code, message], nil]``."""
    return encode_response(msgid, [code, message], None)


def encode_notify(method: str, params: Sequence[Any]) -> bytes:
    """``[2, method, params]``."""
    return _pack([NOTIFY, method, list(params)])


def _is_msgid(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and 0 <= value <= MAX_MSGID


def _is_method(value: Any) -> bool:
    return isinstance(value, str) and value != ""


def parse_frame(obj: Any) -> Frame:
    """Validate one decoded msgpack object as a MessagePack-RPC frame."""
    if not isinstance(obj, list) or not obj:
        raise RpcProtocolError(f"frame is not a non-empty array: {type(obj).__name__}")
    kind = obj[0]
    if isinstance(kind, bool) or not isinstance(kind, int):
        raise RpcProtocolError(f"frame type is not an integer: {kind!r}")
    if kind == REQUEST:
        if len(obj) != _REQUEST_LEN:
            raise RpcProtocolError(f"request has {len(obj)} elements, want {_REQUEST_LEN}")
        _, msgid, method, params = obj
        if not _is_msgid(msgid):
            raise RpcProtocolError(f"request msgid is not a uint32: {msgid!r}")
        if not _is_method(method):
            raise RpcProtocolError(f"request method is not a non-empty string: {method!r}")
        if not isinstance(params, list):
            raise RpcProtocolError(f"request params is not an array: {type(params).__name__}")
        return Request(msgid, method, params)
    if kind == RESPONSE:
        if len(obj) != _RESPONSE_LEN:
            raise RpcProtocolError(f"response has {len(obj)} elements, want {_RESPONSE_LEN}")
        _, msgid, error, result = obj
        if not _is_msgid(msgid):
            raise RpcProtocolError(f"response msgid is not a uint32: {msgid!r}")
        return Response(msgid, error, result)
    if kind == NOTIFY:
        if len(obj) != _NOTIFY_LEN:
            raise RpcProtocolError(f"notify has {len(obj)} elements, want {_NOTIFY_LEN}")
        _, method, params = obj
        if not _is_method(method):
            raise RpcProtocolError(f"notify method is not a non-empty string: {method!r}")
        if not isinstance(params, list):
            raise RpcProtocolError(f"notify params is not an array: {type(params).__name__}")
        return Notify(method, params)
    raise RpcProtocolError(f"unknown frame type {kind}")


class Decoder:
    """Incremental decoder: ``feed(bytes)`` returns the frames completed so far.

    At most ``max_frame_size`` bytes of an unfinished frame are buffered; data is handed to msgpack in slices
    that fit, so one large read holding many small frames is fine, while a single frame longer than the limit
    raises :class:`RpcProtocolError`. After any RpcProtocolError the decoder is unusable.
    """

    def __init__(self, max_frame_size: int = DEFAULT_MAX_FRAME_SIZE) -> None:
        if max_frame_size < 1:
            raise ValueError(f"max_frame_size must be >= 1, got {max_frame_size}")
        self.max_frame_size = max_frame_size
        self._unpacker = msgpack.Unpacker(raw=False, use_list=True, max_buffer_size=max_frame_size)
        self._fed = 0  # bytes handed to the unpacker so far
        self._frame_start = 0  # stream offset where the unfinished frame begins
        self._broken = False

    @property
    def buffered(self) -> int:
        """Bytes of the unfinished frame received so far.

        Counted from the end of the last complete frame rather than from msgpack's own buffer: the unpacker
        consumes container headers and finished elements of a partial frame, so its buffer alone does not
        bound the memory a frame takes.
        """
        return self._fed - self._frame_start

    def feed(self, data: bytes) -> list[Frame]:
        if self._broken:
            raise RpcProtocolError("decoder already failed")
        frames: list[Frame] = []
        view = memoryview(data)
        try:
            while True:
                room = self.max_frame_size - self.buffered
                if view and room <= 0:
                    raise RpcProtocolError(f"frame larger than max_frame_size {self.max_frame_size}")
                chunk, view = view[:room], view[room:]
                if chunk:
                    self._unpacker.feed(chunk)
                    self._fed += len(chunk)
                for obj in self._unpacker:
                    frames.append(parse_frame(obj))
                    self._frame_start = int(self._unpacker.tell())
                if not view:
                    return frames
        except RpcProtocolError:
            self._broken = True
            raise
        except (ValueError, TypeError, msgpack.UnpackException) as exc:
            # FormatError/StackError/BufferFull/limits are ValueError subclasses; TypeError: unhashable map key.
            self._broken = True
            raise RpcProtocolError(f"malformed msgpack: {exc.__class__.__name__}: {exc}") from None
