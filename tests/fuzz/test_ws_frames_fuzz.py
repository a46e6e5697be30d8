"""Properties of comet.ws_frames (RFC 6455 framing) under arbitrary, split, fragmented, oversized and mutated client
traffic: only FrameError with 1002/1009, a split never changes the messages, the parser holds at most one frame
plus one joined message; the server encoders round-trip through a masking client and an independent decoder."""
from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from comet.ws_frames import (
    CONTROL_OPCODES, DATA_OPCODES, MAX_CONTROL_PAYLOAD, MAX_HEADER, SENDABLE_CODES, FrameError, FrameParser,
    close_code, close_frame, close_reply, encode_frame, pong_frame, text_frame, unmask,
)
from tests.fuzz.budget import FUZZ, FUZZ_LIGHT
from tests.fuzz.strategies import (
    OP_BINARY, OP_CLOSE, OP_CONTINUATION, OP_TEXT, client_frame, frame_streams, length_forms, masks, mutated,
    server_frames, splits,
)

CLOSE_CODES = {1002, 1009}  # the module docstring: protocol error, message too big
max_sizes = st.sampled_from((1, 16, 125, 126, 300, 4096))


def receive(chunks: list[bytes], max_size: int) -> tuple[list[tuple[int, bytes]], int | None]:
    """Feed the chunks in order; (messages, close code of the FrameError or None). Checks the bounds after each."""
    parser = FrameParser(max_size)
    messages: list[tuple[int, bytes]] = []
    for chunk in chunks:
        try:
            received = parser.feed(chunk)
        except FrameError as exc:
            assert exc.code in CLOSE_CODES
            return messages, exc.code
        for opcode, payload in received:
            assert opcode in DATA_OPCODES or opcode in CONTROL_OPCODES
            assert len(payload) <= (MAX_CONTROL_PAYLOAD if opcode in CONTROL_OPCODES else max_size)
        messages += received
        assert len(parser._buffer) < max(max_size, MAX_CONTROL_PAYLOAD) + MAX_HEADER, "more than one frame buffered"
        assert len(parser._fragments) <= max_size, "joined message past max_size"
    return messages, None


def same_as_byte_by_byte(chunks: list[bytes], max_size: int) -> None:
    """Any split gives the messages and the close code that bytes fed one at a time give (a read that ends in an
    error raises before returning the messages it completed, so those may be missing; the code may not)."""
    data = b"".join(chunks)
    reference, reference_code = receive([data[i:i + 1] for i in range(len(data))], max_size)
    messages, code = receive(chunks, max_size)
    assert code == reference_code
    if code is None:
        assert messages == reference
    else:
        assert messages == reference[:len(messages)]


@FUZZ
@given(st.data(), st.binary(max_size=400), max_sizes)
def test_arbitrary_bytes_only_raise_frame_error_and_split_changes_nothing(data, raw, max_size):
    same_as_byte_by_byte(data.draw(splits(raw)), max_size)
    same_as_byte_by_byte([raw], max_size)


@FUZZ
@given(st.data(), frame_streams())
def test_valid_traffic_split_anywhere_gives_its_messages_and_truncated_a_prefix_of_them(data, stream):
    assert receive(data.draw(splits(stream.data)), stream.max_size) == (stream.messages, None)
    messages, code = receive([stream.data[:data.draw(st.integers(0, len(stream.data)))]], stream.max_size)
    assert code is None and messages == stream.messages[:len(messages)]


@FUZZ
@given(st.data(), frame_streams())
def test_mutated_valid_traffic_only_raises_frame_error_and_split_changes_nothing(data, stream):
    wire = data.draw(mutated(stream.data))
    same_as_byte_by_byte(data.draw(splits(wire)), stream.max_size)
    same_as_byte_by_byte([wire], stream.max_size)


@FUZZ_LIGHT
@given(st.data(), max_sizes, st.sampled_from(DATA_OPCODES), st.integers(1, 2))
def test_oversized_data_is_refused_with_1009_before_its_payload(data, max_size, opcode, how):
    """A frame longer than max_size is refused from its header; so is a fragmented message that grows past it."""
    size = data.draw(st.integers(max_size + 1, max_size + 70_000))
    parser = FrameParser(max_size)
    if how == 1:
        header = client_frame(opcode, bytes(size), mask=data.draw(masks), length_form=data.draw(length_forms))
        header = header[:len(header) - size]  # header and mask only: nothing of the payload was sent
    else:
        first = data.draw(st.integers(0, max_size))
        parser.feed(client_frame(opcode, bytes(first), fin=False, mask=data.draw(masks)))
        header = client_frame(OP_CONTINUATION, bytes(max_size + 1 - first), mask=data.draw(masks))
    with pytest.raises(FrameError) as info:
        for chunk in data.draw(splits(header)):
            parser.feed(chunk)
    assert info.value.code == 1009
    assert len(parser._buffer) < max(max_size, MAX_CONTROL_PAYLOAD) + MAX_HEADER


@FUZZ_LIGHT
@given(st.data(), st.sampled_from(CONTROL_OPCODES), st.integers(126, 70_000))
def test_oversized_control_frames_are_refused_with_1002(data, opcode, size):
    header = client_frame(opcode, bytes(size), mask=data.draw(masks))[:MAX_HEADER]
    with pytest.raises(FrameError) as info:
        FrameParser(1 << 20).feed(header)
    assert info.value.code == 1002


@FUZZ_LIGHT
@given(st.binary(max_size=2000), masks)
def test_unmask_is_an_involution_and_the_rfc_xor(payload, mask):
    masked = unmask(mask, payload)
    assert unmask(mask, masked) == payload
    assert masked == bytes(byte ^ mask[i % 4] for i, byte in enumerate(payload))


@FUZZ_LIGHT
@given(st.sampled_from((OP_TEXT, OP_BINARY)),
       st.binary(max_size=300) | st.integers(126, 70_000).map(lambda n: (bytes(range(256)) * (n // 256 + 1))[:n]),
       masks)
def test_server_frames_decode_back_and_parse_once_masked(opcode, payload, mask):
    """encode_frame -> an independent decoder gives (FIN, opcode, payload); masked as a client would, the parser
    reads the same message: the encoder and the parser agree on every length encoding."""
    wire = encode_frame(opcode, payload)
    assert list(server_frames(wire)) == [(True, opcode, payload)]
    header_size = len(wire) - len(payload)
    assert header_size == (2 if len(payload) < 126 else 4 if len(payload) < 1 << 16 else 10)
    masked = bytes((wire[0], wire[1] | 0x80)) + wire[2:header_size] + mask + unmask(mask, payload)
    assert FrameParser(max(1, len(payload))).feed(masked) == [(opcode, payload)]


@FUZZ_LIGHT
@given(st.binary(max_size=125))
def test_text_and_pong_frames(payload):
    assert list(server_frames(text_frame(payload))) == [(True, OP_TEXT, payload)]
    assert list(server_frames(pong_frame(payload))) == [(True, 0xA, payload)]


@FUZZ_LIGHT
@given(st.none() | st.sampled_from(sorted(SENDABLE_CODES)) | st.integers(3000, 4999),
       st.text(max_size=20) | st.text(max_size=20).map(lambda text: text * 8))
def test_close_frame_fits_a_control_frame_and_carries_its_code(code, reason):
    [(fin, opcode, payload)] = list(server_frames(close_frame(code, reason)))
    assert fin and opcode == OP_CLOSE and len(payload) <= MAX_CONTROL_PAYLOAD
    assert close_code(payload) == code
    if code is not None:
        text = payload[2:].decode("utf-8")  # RFC 6455 7.1.6: the reason is valid UTF-8, cut or not
        assert reason.encode("utf-8").startswith(text.encode("utf-8"))


@FUZZ_LIGHT
@given(st.binary(max_size=125))
def test_close_reply_to_any_close_payload_is_a_close_frame_with_a_sendable_code(payload):
    [(_, opcode, reply)] = list(server_frames(close_reply(payload)))
    assert opcode == OP_CLOSE
    if len(payload) < 2:
        assert reply == b""
        return
    code = close_code(reply)
    assert code in SENDABLE_CODES or (code is not None and 3000 <= code <= 4999)
    assert code == close_code(payload) or code == 1002


@FUZZ_LIGHT
@given(st.data(), frame_streams(max_size=4096))
def test_client_frames_sent_unmasked_are_refused_with_1002(data, stream):
    """Clearing the mask bit of any one frame of valid traffic is a protocol error at that frame."""
    parser, wire = FrameParser(stream.max_size), stream.data
    starts, pos = [], 0
    while pos < len(wire):  # walk the frames of the stream to find their starts
        starts.append(pos)
        size, header = wire[pos + 1] & 0x7F, 2
        if size == 126:
            size, header = int.from_bytes(wire[pos + 2:pos + 4], "big"), 4
        elif size == 127:
            size, header = int.from_bytes(wire[pos + 2:pos + 10], "big"), 10
        pos += header + 4 + size
    if not starts:
        return
    at = data.draw(st.sampled_from(starts))
    broken = wire[:at + 1] + bytes((wire[at + 1] & 0x7F,)) + wire[at + 2:]
    with pytest.raises(FrameError) as info:
        parser.feed(broken)
    assert info.value.code == 1002
