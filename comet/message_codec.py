"""PURE encoding of one pushed message into the forms clients receive (DESIGN.md section 4, "Message JSON").

* new form (the client sent a version): ``{"msg":<raw JSON>,"mid":N,"gid":G}``: the pushed JSON inserted
  verbatim, never re-encoded;
* old form (no version, gopush-cluster before 1.0): ``{"msg":"<the JSON as a string>","mid":N,"gid":G}``;
* each of them as a TCP bulk string ``$<len>\\r\\n<json>\\r\\n``, len counted in bytes.

An :class:`EncodedMessage` is built once per push and shared by every connection of the key; each form is made
on first use and cached, so a key whose clients all use one transport and one version pays for one encoding.
"""
from __future__ import annotations

import json

GID_PRIVATE = 0
GID_PUBLIC = 1


def tcp_frame(payload: bytes) -> bytes:
    """``$<len>\\r\\n<payload>\\r\\n`` (a Redis bulk string)."""
    return b"$%d\r\n%b\r\n" % (len(payload), payload)


class EncodedMessage:
    """One message (raw JSON bytes, mid, gid) and its lazily built, cached wire forms."""

    __slots__ = ("msg", "mid", "gid", "_new_json", "_old_json", "_new_frame", "_old_frame")

    def __init__(self, msg: bytes, mid: int, gid: int = GID_PRIVATE) -> None:
        self.msg = msg
        self.mid = mid
        self.gid = gid
        self._new_json: bytes | None = None
        self._old_json: bytes | None = None
        self._new_frame: bytes | None = None
        self._old_frame: bytes | None = None

    def _tail(self) -> bytes:
        return b',"mid":%d,"gid":%d}' % (self.mid, self.gid)

    @property
    def new_json(self) -> bytes:
        if self._new_json is None:
            self._new_json = b'{"msg":' + self.msg + self._tail()
        return self._new_json

    @property
    def old_json(self) -> bytes:
        if self._old_json is None:
            # The message was validated as UTF-8 JSON before the push; "replace" only guards against a caller
            # that skipped that, so that one bad message can never raise in the middle of a fan-out.
            text = json.dumps(self.msg.decode("utf-8", "replace"), ensure_ascii=False)
            self._old_json = b'{"msg":' + text.encode("utf-8") + self._tail()
        return self._old_json

    @property
    def new_frame(self) -> bytes:
        if self._new_frame is None:
            self._new_frame = tcp_frame(self.new_json)
        return self._new_frame

    @property
    def old_frame(self) -> bytes:
        if self._old_frame is None:
            self._old_frame = tcp_frame(self.old_json)
        return self._old_frame

    def json(self, new_form: bool) -> bytes:
        """The JSON text for a WebSocket frame."""
        return self.new_json if new_form else self.old_json

    def frame(self, new_form: bool) -> bytes:
        """The TCP bulk string."""
        return self.new_frame if new_form else self.old_frame

    def __repr__(self) -> str:
        return f"EncodedMessage(mid={self.mid}, gid={self.gid}, {len(self.msg)} bytes)"
