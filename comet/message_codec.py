"""PURE encoding of one pushed message into the forms clients receive (DESIGN.md section 4, "Message JSON").

* new form (the client sent a version): ``{"msg":<raw JSON>,"mid":N,"gid":G}``: the pushed JSON inserted
  verbatim, never re-encoded;
* old form (no version, gopush-cluster before 1.0): ``{"msg":"<the JSON as a string>","mid":N,"gid":G}``;
* each of them as a TCP bulk string ``$<len>\\r\\n<json>\\r\\n``, len counted in bytes, and as a WebSocket
  text frame (``ws_frames.text_frame``).

An :class:`EncodedMessage` is built once per push and shared by every connection of the key; each form is made
on first use and cached, so a key whose clients all use one transport and one version pays for one encoding.
A connection knows its wire form as one of the ``FORM_*`` numbers and asks for ``wire(form)``: the bytes it
writes, the same object for every connection of that form.
"""
from __future__ import annotations

import json

from comet.ws_frames import text_frame

GID_PRIVATE = 0
GID_PUBLIC = 1

FORM_TCP_OLD = 0  # TCP bulk string of the old JSON form
FORM_TCP_NEW = 1  # TCP bulk string of the new JSON form
FORM_WS_OLD = 2   # WebSocket text frame of the old JSON form
FORM_WS_NEW = 3   # WebSocket text frame of the new JSON form


def wire_form(websocket: bool, new_form: bool) -> int:
    """The FORM_* number of a connection's transport and JSON form."""
    return (FORM_WS_OLD if websocket else FORM_TCP_OLD) + (1 if new_form else 0)


def tcp_frame(payload: bytes) -> bytes:
    """``$<len>\\r\\n<payload>\\r\\n`` (a Redis bulk string)."""
    return b"$%d\r\n%b\r\n" % (len(payload), payload)


class EncodedMessage:
    """One message (raw JSON bytes, mid, gid) and its lazily built, cached wire forms."""

    __slots__ = ("msg", "mid", "gid", "_new_json", "_old_json", "_wire")

    def __init__(self, msg: bytes, mid: int, gid: int = GID_PRIVATE) -> None:
        self.msg = msg
        self.mid = mid
        self.gid = gid
        self._new_json: bytes | None = None
        self._old_json: bytes | None = None
        self._wire: list[bytes | None] = [None, None, None, None]  # by FORM_*

    def wire(self, form: int) -> bytes:
        """The bytes a connection of ``form`` (FORM_*) writes; built on first use, then shared."""
        cached = self._wire[form]
        if cached is None:
            payload = self.new_json if form & 1 else self.old_json
            cached = self._wire[form] = text_frame(payload) if form >= FORM_WS_OLD else tcp_frame(payload)
        return cached

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
        return self.wire(FORM_TCP_NEW)

    @property
    def old_frame(self) -> bytes:
        return self.wire(FORM_TCP_OLD)

    def json(self, new_form: bool) -> bytes:
        """The JSON text for a WebSocket frame."""
        return self.new_json if new_form else self.old_json

    def frame(self, new_form: bool) -> bytes:
        """The TCP bulk string."""
        return self.wire(FORM_TCP_NEW if new_form else FORM_TCP_OLD)

    def ws_frame(self, new_form: bool) -> bytes:
        """The WebSocket text frame."""
        return self.wire(FORM_WS_NEW if new_form else FORM_WS_OLD)

    def __repr__(self) -> str:
        return f"EncodedMessage(mid={self.mid}, gid={self.gid}, {len(self.msg)} bytes)"
