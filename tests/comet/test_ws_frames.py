"""comet.ws_frames: client frames split, merged, truncated, fragmented, oversized or broken; server encoders."""
import struct

import pytest

from comet.ws_frames import (
    OP_BINARY, OP_CLOSE, OP_CONTINUATION, OP_PING, OP_PONG, OP_TEXT, FrameError, FrameParser, close_code,
    close_frame, close_reply, encode_frame, pong_frame, text_frame, unmask,
)
from tests.comet.clients import MASK, client_frame

def test_unmask_is_its_own_inverse_and_matches_the_rfc_example():
    # RFC 6455 section 5.7: a masked "Hello"
    assert unmask(MASK, bytes.fromhex("7f9f4d5158")) == b"Hello"
    assert unmask(MASK, unmask(MASK, b"x" * 1001)) == b"x" * 1001
    assert unmask(MASK, b"") == b""


def test_one_frame_per_feed_and_merged_frames():
    parser = FrameParser(4096)
    assert parser.feed(client_frame(OP_TEXT, b"h")) == [(OP_TEXT, b"h")]
    merged = client_frame(OP_TEXT, b"h") + client_frame(OP_BINARY, b"h") + client_frame(OP_PING, b"p")
    assert parser.feed(merged) == [(OP_TEXT, b"h"), (OP_BINARY, b"h"), (OP_PING, b"p")]


@pytest.mark.parametrize("size", [0, 1, 125, 126, 4000, 70_000])
def test_split_byte_by_byte_every_length_encoding(size):
    payload = bytes(range(256)) * (size // 256) + bytes(size % 256)
    data = client_frame(OP_TEXT, payload) + client_frame(OP_TEXT, b"h")
    parser = FrameParser(100_000)
    received = []
    for i in range(len(data)):
        received += parser.feed(data[i:i + 1])
    assert received == [(OP_TEXT, payload), (OP_TEXT, b"h")]


def test_truncated_frame_waits_for_the_rest():
    data = client_frame(OP_TEXT, b"hello")
    parser = FrameParser(4096)
    assert parser.feed(data[:-1]) == []
    assert parser.feed(data[-1:]) == [(OP_TEXT, b"hello")]


def test_oversized_frame_is_refused_from_its_header():
    parser = FrameParser(64)
    header_only = client_frame(OP_TEXT, b"", length=65)[:2]
    with pytest.raises(FrameError) as info:
        parser.feed(header_only + MASK)  # no payload sent yet: refused before buffering it
    assert info.value.code == 1009
    with pytest.raises(FrameError) as info:
        FrameParser(1 << 20).feed(client_frame(OP_BINARY, b"", length=1 << 40)[:10])
    assert info.value.code == 1009


def test_control_frames_are_limited_to_125_not_to_max_size():
    assert FrameParser(16).feed(client_frame(OP_PING, b"p" * 125)) == [(OP_PING, b"p" * 125)]
    with pytest.raises(FrameError) as info:
        FrameParser(4096).feed(client_frame(OP_PING, b"p" * 126))
    assert info.value.code == 1002


@pytest.mark.parametrize("data", [
    client_frame(OP_TEXT, b"h", mask=None),             # unmasked
    client_frame(OP_TEXT, b"h", rsv=0x40),              # RSV1 without permessage-deflate
    client_frame(0x3, b"h"),                            # reserved data opcode
    client_frame(0xB, b"h"),                            # reserved control opcode
    client_frame(OP_PING, b"p", fin=False),             # fragmented control frame
    client_frame(OP_CONTINUATION, b"h"),                # continuation of nothing
    client_frame(OP_TEXT, b"a", fin=False) + client_frame(OP_TEXT, b"b"),  # new message inside a fragmented one
    client_frame(OP_CLOSE, b"\x03"),                    # 1-byte close payload
])
def test_protocol_violations_close_with_1002(data):
    with pytest.raises(FrameError) as info:
        FrameParser(4096).feed(data)
    assert info.value.code == 1002


def test_fragments_are_joined_with_control_frames_in_between():
    parser = FrameParser(4096)
    data = (client_frame(OP_TEXT, b"he", fin=False) + client_frame(OP_PING, b"1")
            + client_frame(OP_CONTINUATION, b"", fin=False) + client_frame(OP_CONTINUATION, b"llo"))
    assert parser.feed(data) == [(OP_PING, b"1"), (OP_TEXT, b"hello")]
    assert parser.feed(client_frame(OP_BINARY, b"h", fin=False) + client_frame(OP_CONTINUATION, b"")) == [
        (OP_BINARY, b"h")]


def test_joined_message_over_max_size_closes_with_1009():
    parser = FrameParser(10)
    parser.feed(client_frame(OP_TEXT, b"x" * 6, fin=False))
    with pytest.raises(FrameError) as info:
        parser.feed(client_frame(OP_CONTINUATION, b"x" * 5))
    assert info.value.code == 1009


def test_empty_fragments_do_not_grow_the_parser():
    parser = FrameParser(10)
    parser.feed(client_frame(OP_TEXT, b"", fin=False))
    for _ in range(1000):
        assert parser.feed(client_frame(OP_CONTINUATION, b"", fin=False)) == []
    assert parser.feed(client_frame(OP_CONTINUATION, b"h")) == [(OP_TEXT, b"h")]


@pytest.mark.parametrize("size, header", [
    (0, b"\x81\x00"), (125, b"\x81\x7d"), (126, b"\x81\x7e\x00\x7e"), (65535, b"\x81\x7e\xff\xff"),
    (65536, b"\x81\x7f" + struct.pack(">Q", 65536)),
])
def test_server_text_frames_are_unmasked_with_the_shortest_length(size, header):
    payload = b"j" * size
    assert text_frame(payload) == header + payload


def test_pong_and_close_frames():
    assert pong_frame(b"abc") == b"\x8a\x03abc"
    assert encode_frame(OP_PONG, b"") == b"\x8a\x00"
    assert close_frame() == b"\x88\x00"
    assert close_frame(1001, "node stopping") == b"\x88\x0f\x03\xe9node stopping"
    long_reason = close_frame(1000, "é" * 100)  # cut to 125 bytes without splitting a character
    assert len(long_reason) <= 2 + 125
    long_reason[4:].decode("utf-8")
    assert close_code(b"\x03\xf1bye") == 1009 and close_code(b"") is None


def test_parsed_close_frame_round_trip():
    assert FrameParser(64).feed(client_frame(OP_CLOSE, close_frame(1000, "bye")[2:])) == [
        (OP_CLOSE, b"\x03\xe8bye")]


@pytest.mark.parametrize("received, answer", [
    (b"", b"\x88\x00"),                                   # no code: an empty close frame
    (b"\x03\xe8bye", b"\x88\x02\x03\xe8"),                 # 1000 echoed, without the reason
    (b"\x0f\xa0", b"\x88\x02\x0f\xa0"),                    # 4000 (private use) echoed
    (b"\x03\xed", b"\x88\x02\x03\xea"),                    # 1005 must never be sent: 1002
    (b"\x00\x10", b"\x88\x02\x03\xea"),                    # 16 is no close code: 1002
])
def test_close_reply(received, answer):
    assert close_reply(received) == answer
