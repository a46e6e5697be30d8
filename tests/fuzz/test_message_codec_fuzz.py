"""Properties of comet.message_codec: every wire form of any message decodes back to the message, its mid and gid
(new form: the pushed JSON verbatim; old form: that JSON as a string), and no message bytes can make it raise."""
from __future__ import annotations

import json

from hypothesis import given
from hypothesis import strategies as st

from comet.message_codec import (
    FORM_TCP_NEW, FORM_TCP_OLD, FORM_WS_NEW, FORM_WS_OLD, EncodedMessage, tcp_frame, wire_form,
)
from tests.fuzz.budget import FUZZ, FUZZ_LIGHT
from tests.fuzz.strategies import OP_TEXT, json_values, server_frames

mids = st.integers(0, (1 << 63) - 1)
gids = st.sampled_from((0, 1))
json_texts = st.tuples(json_values, st.booleans()).map(
    lambda pair: json.dumps(pair[0], ensure_ascii=pair[1], separators=(",", ":") if pair[1] else (", ", ": ")))


def tcp_payload(frame: bytes) -> bytes:
    """The payload of a ``$<len>\\r\\n<payload>\\r\\n`` bulk string, checking that len counts its bytes."""
    header, _, rest = frame.partition(b"\r\n")
    assert header[:1] == b"$" and header[1:].isdigit()
    size = int(header[1:])
    assert len(rest) == size + 2 and rest.endswith(b"\r\n")
    return rest[:size]


def ws_payload(frame: bytes) -> bytes:
    [(fin, opcode, payload)] = list(server_frames(frame))
    assert fin and opcode == OP_TEXT
    return payload


@FUZZ
@given(json_texts, mids, gids)
def test_every_wire_form_decodes_back_to_the_message(text, mid, gid):
    raw = text.encode("utf-8")
    message = EncodedMessage(raw, mid, gid)
    new = json.loads(message.new_json)
    old = json.loads(message.old_json)
    assert new == {"msg": json.loads(text), "mid": mid, "gid": gid}
    assert message.new_json == b'{"msg":' + raw + b',"mid":%d,"gid":%d}' % (mid, gid)  # inserted verbatim
    assert old == {"msg": text, "mid": mid, "gid": gid}
    assert tcp_payload(message.wire(FORM_TCP_NEW)) == message.new_json
    assert tcp_payload(message.wire(FORM_TCP_OLD)) == message.old_json
    assert ws_payload(message.wire(FORM_WS_NEW)) == message.new_json
    assert ws_payload(message.wire(FORM_WS_OLD)) == message.old_json
    for form in (FORM_TCP_OLD, FORM_TCP_NEW, FORM_WS_OLD, FORM_WS_NEW):
        assert message.wire(form) is message.wire(form), "a form is built once and shared"
    assert message.frame(True) == message.new_frame and message.frame(False) == message.old_frame
    assert message.ws_frame(True) == message.wire(wire_form(True, True))
    assert message.json(False) == message.old_json


@FUZZ
@given(st.binary(max_size=300), mids)
def test_any_message_bytes_encode_without_raising_and_the_old_form_stays_json(raw, mid):
    """A caller that skipped validation can never make a fan-out raise: the old form is JSON for any bytes."""
    message = EncodedMessage(raw, mid)
    old = json.loads(message.old_json)
    assert old["mid"] == mid and old["msg"] == raw.decode("utf-8", "replace")
    assert tcp_payload(message.frame(True)) == message.new_json
    assert ws_payload(message.ws_frame(False)) == message.old_json


@FUZZ_LIGHT
@given(st.binary(max_size=70_000) | st.binary(max_size=40))
def test_tcp_frame_length_counts_bytes(payload):
    assert tcp_payload(tcp_frame(payload)) == payload
