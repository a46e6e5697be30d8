"""Properties of thirdparty.rpc_codec (MessagePack-RPC framing): encode -> decode is the identity whatever the
split, any other bytes raise only RpcProtocolError (after which the decoder stays failed), and the decoder never
holds more than max_frame_size bytes of an unfinished frame."""
from __future__ import annotations

import msgpack
import pytest
from hypothesis import given
from hypothesis import strategies as st

from thirdparty.rpc_codec import (
    MAX_MSGID, Decoder, Frame, Notify, Request, Response, RpcProtocolError, encode_error, encode_notify,
    encode_request, encode_response, parse_frame,
)
from tests.fuzz.budget import FUZZ, FUZZ_LIGHT
from tests.fuzz.strategies import msgpack_values, mutated, splits

msgids = st.integers(0, MAX_MSGID)
methods = st.text(min_size=1, max_size=24)
params = st.lists(msgpack_values, max_size=3)
frame_sizes = st.sampled_from((16, 64, 1024, 1 << 20))

requests = st.builds(Request, msgids, methods, params)
responses = st.builds(Response, msgids, st.none() | st.tuples(st.integers(0, 65535), st.text(max_size=16)).map(list),
                      msgpack_values)
notifies = st.builds(Notify, methods, params)
frames = st.one_of(requests, responses, notifies)


def encode(frame: Frame) -> bytes:
    if isinstance(frame, Request):
        return encode_request(frame.msgid, frame.method, frame.params)
    if isinstance(frame, Response):
        if isinstance(frame.error, list) and frame.result is None:
            return encode_error(frame.msgid, *frame.error)
        return encode_response(frame.msgid, frame.error, frame.result)
    return encode_notify(frame.method, frame.params)


def decode(chunks: list[bytes], max_frame_size: int) -> tuple[list[Frame], bool]:
    """Feed the chunks in order: (frames, failed). Checks the documented bound after every read."""
    decoder = Decoder(max_frame_size)
    received: list[Frame] = []
    for chunk in chunks:
        try:
            received += decoder.feed(chunk)
        except RpcProtocolError:
            with pytest.raises(RpcProtocolError):  # "after any RpcProtocolError the decoder is unusable"
                decoder.feed(b"\x90")
            return received, True
        assert 0 <= decoder.buffered <= max_frame_size, "decoder holds more than max_frame_size"
    return received, False


def same_as_byte_by_byte(chunks: list[bytes], max_frame_size: int) -> tuple[list[Frame], bool]:
    """Any split gives the frames and the failure that bytes fed one at a time give (a read that fails raises
    before returning the frames it completed, so those may be missing)."""
    data = b"".join(chunks)
    reference, reference_failed = decode([data[i:i + 1] for i in range(len(data))], max_frame_size)
    received, failed = decode(chunks, max_frame_size)
    assert failed == reference_failed
    assert received == (reference if not failed else reference[:len(received)])
    return reference, reference_failed


@FUZZ
@given(st.data(), st.lists(frames, min_size=1, max_size=3), frame_sizes)
def test_encoded_frames_decode_to_themselves_whatever_the_split_and_the_limit_is_per_frame(data, sent, limit):
    """encode -> decode is the identity, whatever the split; many frames in one read are fine, one frame over
    the limit is refused."""
    wire = b"".join(encode(frame) for frame in sent)
    assert decode(data.draw(splits(wire)), 1 << 20) == (sent, False)
    received, failed = same_as_byte_by_byte(data.draw(splits(wire)), limit)
    sizes = [len(encode(frame)) for frame in sent]
    if all(size <= limit for size in sizes):
        assert (received, failed) == (sent, False)
    else:
        first_big = next(i for i, size in enumerate(sizes) if size > limit)
        assert failed and received == sent[:first_big]


@FUZZ
@given(st.data(), st.binary(max_size=300), frame_sizes)
def test_arbitrary_bytes_only_raise_rpc_protocol_error_and_split_changes_nothing(data, raw, limit):
    same_as_byte_by_byte(data.draw(splits(raw)), limit)


@FUZZ
@given(st.data(), st.lists(frames, min_size=1, max_size=3), frame_sizes)
def test_mutated_frames_only_raise_rpc_protocol_error_and_split_changes_nothing(data, sent, limit):
    wire = data.draw(mutated(b"".join(encode(frame) for frame in sent)))
    same_as_byte_by_byte(data.draw(splits(wire)), limit)


@FUZZ
@given(st.data(), msgpack_values | st.lists(msgpack_values, max_size=6))
def test_any_msgpack_value_is_a_frame_or_an_rpc_protocol_error(data, value):
    """Well-formed msgpack that is not a MessagePack-RPC frame (wrong type, arity, msgid, method) is refused."""
    wire = msgpack.packb(value, use_bin_type=True)
    received, failed = same_as_byte_by_byte(data.draw(splits(wire)), 1 << 20)
    if not failed:
        assert len(received) == 1 and encode(received[0]) == wire


@FUZZ_LIGHT
@given(st.integers(1, 4096), st.integers(1, 512), st.data())
def test_a_huge_frame_is_refused_once_the_limit_is_reached_not_later(limit, read_size, data):
    """A bin header announcing more than the limit: refused no later than the read that passes the limit."""
    size = data.draw(st.integers(limit + 1, limit + 4096))
    wire = msgpack.packb([0, 1, "M", [b"x" * size]], use_bin_type=True)
    decoder = Decoder(limit)
    for start in range(0, len(wire), read_size):
        try:
            decoder.feed(wire[start:start + read_size])
        except RpcProtocolError:
            return
        assert decoder.buffered <= limit, "the decoder took more than the limit without refusing the frame"
    raise AssertionError("a frame over the limit was never refused")


@FUZZ_LIGHT
@given(msgpack_values)
def test_parse_frame_on_any_decoded_value(value):
    try:
        frame = parse_frame(value)
    except RpcProtocolError:
        return
    assert isinstance(frame, (Request, Response, Notify))


@FUZZ_LIGHT
@given(st.integers() | st.booleans() | st.none() | st.floats(), methods,
       st.lists(st.integers(-(1 << 63), (1 << 64) - 1), max_size=2))
def test_encoders_refuse_msgids_that_are_not_uint32(msgid, method, values):
    valid = isinstance(msgid, int) and not isinstance(msgid, bool) and 0 <= msgid <= MAX_MSGID
    for encoder, args in ((encode_request, (msgid, method, values)), (encode_response, (msgid, None, values)),
                          (encode_error, (msgid, 65534, method))):
        if valid:
            assert Decoder().feed(encoder(*args))
        else:
            with pytest.raises(ValueError):
                encoder(*args)


@FUZZ_LIGHT
@given(st.lists(msgpack_values | st.integers() | st.sets(st.integers(0, 3), max_size=2) | st.complex_numbers(),
                max_size=3))
def test_encoders_raise_type_or_value_error_for_what_msgpack_cannot_encode(values):
    """Params of any Python value: encoded, or refused with TypeError/ValueError (OverflowError too, see below)."""
    try:
        wire = encode_request(1, "M", values)
    except (TypeError, ValueError, OverflowError):
        return
    assert decode([wire], 1 << 20) == ([Request(1, "M", values)], False)


def test_an_int_beyond_64_bits_is_refused_with_a_documented_error():
    with pytest.raises((TypeError, ValueError, OverflowError)):
        encode_request(1, "M", [1 << 64])
