"""MessagePack-RPC codec: round trips, split and batched frames, malformed and oversized input."""
from __future__ import annotations

import msgpack
import pytest

from thirdparty.rpc_codec import (
    MAX_MSGID, Decoder, Notify, Request, Response, RpcProtocolError, encode_error, encode_notify,
    encode_request, encode_response,
)

PARAMS = [
    [],
    ["alice", b'{"title":"hi"}', 600],
    [["k1", "k2"], b"\x00\xff", 0],
    [{"nested": [1, 2.5, None, True]}, -1, 2**63 - 1],
]


@pytest.mark.parametrize("params", PARAMS)
@pytest.mark.parametrize("msgid", [0, 1, 12345, MAX_MSGID])
def test_request_round_trip(msgid, params):
    assert Decoder().feed(encode_request(msgid, "MessageRPC.SavePrivate", params)) == [
        Request(msgid, "MessageRPC.SavePrivate", params)]


@pytest.mark.parametrize("error,result", [
    (None, 17),
    (None, {"msgs": [[1, b"a"], [2, b"b"]], "trimmed": False}),
    ([65534, "bad key"], None),
])
def test_response_round_trip(error, result):
    assert Decoder().feed(encode_response(7, error, result)) == [Response(7, error, result)]


def test_error_response_shape():
    assert msgpack.unpackb(encode_error(9, 1001, "no node"), raw=False) == [1, 9, [1001, "no node"], None]


def test_notify_round_trip():
    assert Decoder().feed(encode_notify("CometRPC.Ping", ("x", b"y"))) == [Notify("CometRPC.Ping", ["x", b"y"])]


def test_str_and_bytes_stay_distinct():
    [frame] = Decoder().feed(encode_request(1, "M", ["text", b"bytes"]))
    assert isinstance(frame, Request)
    assert frame.params == ["text", b"bytes"]
    assert type(frame.params[0]) is str and type(frame.params[1]) is bytes


@pytest.mark.parametrize("msgid", [-1, MAX_MSGID + 1, True])
def test_encode_rejects_bad_msgid(msgid):
    with pytest.raises(ValueError):
        encode_request(msgid, "M", [])


def test_frame_fed_one_byte_at_a_time():
    data = encode_request(3, "CometRPC.PushPrivate", ["k", b"m" * 300, 5])
    decoder = Decoder()
    frames = []
    for i in range(len(data)):
        got = decoder.feed(data[i:i + 1])
        if i < len(data) - 1:
            assert got == []
        frames += got
    assert frames == [Request(3, "CometRPC.PushPrivate", ["k", b"m" * 300, 5])]
    assert decoder.buffered == 0


def test_several_frames_in_one_feed_and_a_split_tail():
    frames = [encode_request(i, "M", [i]) for i in range(5)] + [encode_notify("N", []), encode_response(9, None, 1)]
    data = b"".join(frames)
    decoder = Decoder()
    cut = len(data) - 3
    assert decoder.feed(data[:cut]) == [Request(i, "M", [i]) for i in range(5)] + [Notify("N", [])]
    assert decoder.buffered == len(frames[-1]) - 3
    assert decoder.feed(data[cut:]) == [Response(9, None, 1)]


def test_many_small_frames_in_a_read_larger_than_max_frame_size():
    frame = encode_request(1, "M", ["x" * 40])
    decoder = Decoder(max_frame_size=len(frame) + 10)
    assert len(decoder.feed(frame * 100)) == 100


def test_frame_of_exactly_max_frame_size_is_accepted():
    frame = encode_request(1, "M", [b"x" * 1000])
    assert Decoder(max_frame_size=len(frame)).feed(frame) == [Request(1, "M", [b"x" * 1000])]


@pytest.mark.parametrize("split", [False, True])
def test_oversized_frame_is_rejected_without_buffering_it(split):
    frame = encode_request(1, "M", [b"x" * 5000])
    decoder = Decoder(max_frame_size=1024)
    with pytest.raises(RpcProtocolError):
        if split:
            for i in range(0, len(frame), 100):
                decoder.feed(frame[i:i + 100])
                assert decoder.buffered <= 1024
        else:
            decoder.feed(frame)
    assert decoder.buffered <= 1024


def test_oversized_frame_of_many_small_elements_is_rejected():
    # msgpack consumes finished elements of a partial array, so its own buffer limit would not catch this one.
    frame = _pack([0, 1, "M", [None] * 100_000])
    decoder = Decoder(max_frame_size=4096)
    with pytest.raises(RpcProtocolError):
        for i in range(0, len(frame), 512):
            decoder.feed(frame[i:i + 512])
            assert decoder.buffered <= 4096


def test_decoder_stays_broken_after_an_error():
    decoder = Decoder()
    with pytest.raises(RpcProtocolError):
        decoder.feed(msgpack.packb("nope"))
    with pytest.raises(RpcProtocolError):
        decoder.feed(encode_request(1, "M", []))


def _pack(obj):
    return msgpack.packb(obj, use_bin_type=True)


MALFORMED = {
    "not an array": _pack({"a": 1}),
    "a string": _pack("hello"),
    "empty array": _pack([]),
    "type is a string": _pack(["0", 1, "M", []]),
    "type is bool": _pack([False, 1, "M", []]),
    "unknown type": _pack([3, 1, "M", []]),
    "request too short": _pack([0, 1, "M"]),
    "request too long": _pack([0, 1, "M", [], 5]),
    "request msgid negative": _pack([0, -1, "M", []]),
    "request msgid too big": _pack([0, MAX_MSGID + 1, "M", []]),
    "request msgid a string": _pack([0, "1", "M", []]),
    "request msgid bool": _pack([0, True, "M", []]),
    "request method bytes": _pack([0, 1, b"M", []]),
    "request method empty": _pack([0, 1, "", []]),
    "request params a map": _pack([0, 1, "M", {"a": 1}]),
    "request params a string": _pack([0, 1, "M", "abc"]),
    "response too short": _pack([1, 1, None]),
    "response msgid float": _pack([1, 1.0, None, 1]),
    "notify too long": _pack([2, "M", [], 1]),
    "notify method an int": _pack([2, 5, []]),
    "notify params nil": _pack([2, "M", None]),
    "reserved msgpack byte": b"\xc1",
    "invalid utf-8 str": b"\x94\x00\x01\xa2\xff\xfe\x90",
    "int map key": _pack({1: 2}),
    "deep nesting": b"\x91" * 5000 + b"\xc0",
}


@pytest.mark.parametrize("data", MALFORMED.values(), ids=MALFORMED.keys())
def test_malformed_frame_raises_protocol_error(data):
    with pytest.raises(RpcProtocolError):
        Decoder().feed(data)


def test_valid_frames_before_a_bad_one_are_not_returned_but_error_is_raised():
    decoder = Decoder()
    with pytest.raises(RpcProtocolError):
        decoder.feed(encode_request(1, "M", []) + _pack([9]))


def test_bad_max_frame_size():
    with pytest.raises(ValueError):
        Decoder(max_frame_size=0)
