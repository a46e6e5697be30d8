"""The subscriber's pure codecs against the comet's own parsers and encoders (each side checks the other)."""
from __future__ import annotations

import pytest

from comet.protocol import SubscribeParser, validate_subscribe
from comet.subscriber_wire import (
    ACK, Closed, Payload, Ping, Refused, TcpReplyParser, WireError, WsFrameParser, check_handshake, client_frame,
    handshake_request, heartbeat_frame, subscribe_command, subscribe_target,
)
from comet.ws_frames import (
    OP_BINARY, OP_CLOSE, OP_CONTINUATION, OP_PING, OP_TEXT, FrameParser, close_frame, encode_frame, text_frame,
)
from comet.ws_handshake import RequestHeadParser, parse_upgrade

MASK = b"\x01\x02\x03\x04"


def feed_bytewise(parser: TcpReplyParser | WsFrameParser, data: bytes) -> list:
    events = []
    for i in range(len(data)):
        events.extend(parser.feed(data[i:i + 1]))
    return events


@pytest.mark.parametrize("token", ["", "t0k=n/+é"])
def test_subscribe_command_is_what_the_comet_parses(token: str) -> None:
    parser = SubscribeParser()
    subscribe = parser.feed(subscribe_command("Terry-Mao é", 45, token) + b"h")
    assert subscribe is not None
    assert (subscribe.key, subscribe.heartbeat, subscribe.token, subscribe.version) == \
        ("Terry-Mao é", 45, token, "1.0")
    assert parser.remainder == b"h"


def test_websocket_upgrade_round_trip_with_the_comet_handshake() -> None:
    target = subscribe_target("a b&c=é", 30, "tok&en")
    head = RequestHeadParser().feed(handshake_request("127.0.0.1:6968", target, "dGhlIHNhbXBsZSBub25jZQ=="))
    assert head is not None
    request = parse_upgrade(head[0])
    subscribe = validate_subscribe(request.param("key"), request.param("heartbeat"), request.param("token"),
                                   request.param("ver"))
    assert (subscribe.key, subscribe.heartbeat, subscribe.token, subscribe.version) == ("a b&c=é", 30, "tok&en", "1.0")
    check_handshake(request.response()[:-4], "dGhlIHNhbXBsZSBub25jZQ==")   # no WireError
    with pytest.raises(WireError, match="Accept"):
        check_handshake(request.response()[:-4], "AAAAAAAAAAAAAAAAAAAAAA==")
    with pytest.raises(WireError, match="refused"):
        check_handshake(b"HTTP/1.1 404 Not Found\r\nContent-Length: 0", "x")


def test_tcp_replies_and_messages_split_anywhere() -> None:
    stream = b'+h\r\n$14\r\n{"msg":1,"x":}\r\n+h\r\n$0\r\n\r\n-n\r\n'
    expected = [ACK, Payload(b'{"msg":1,"x":}'), ACK, Payload(b""), Refused("n")]
    assert TcpReplyParser(1024).feed(stream) == expected
    assert feed_bytewise(TcpReplyParser(1024), stream) == expected
    assert Refused("a").meaning == "token refused"


@pytest.mark.parametrize("stream, problem", [
    (b"+x\r\n", "unexpected line"),
    (b"h\r\n", "unexpected line"),
    (b"+h\n", "CRLF"),
    (b"$3\r\nabcd\r\n", "length mismatch"),
    (b"$-1\r\n", "bad message length"),
    (b"$" + b"9" * 40, "longer than"),
    (b"$1025\r\n", "more than 1024"),   # refused from the header, before any byte of it is buffered
])
def test_tcp_stream_violations(stream: bytes, problem: str) -> None:
    with pytest.raises(WireError, match=problem):
        TcpReplyParser(1024).feed(stream)


@pytest.mark.parametrize("size", [0, 1, 125, 126, 65535, 65536, 70000])
def test_client_frames_are_what_the_comet_parses(size: int) -> None:
    payload = bytes(range(256)) * (size // 256) + bytes(range(size % 256))
    assert FrameParser(1 << 20).feed(client_frame(OP_BINARY, payload, MASK)) == [(OP_BINARY, payload)]
    assert FrameParser(64).feed(heartbeat_frame(MASK)) == [(OP_TEXT, b"h")]


def test_server_frames_to_events_split_anywhere() -> None:
    message = b'{"msg":{"a":"\xc3\xa9"},"mid":7,"gid":0}'
    stream = (text_frame(b"+h\r\n") + text_frame(message) + encode_frame(OP_PING, b"p")
              + bytes((OP_TEXT, 3)) + b'{"m' + bytes((0x80 | OP_CONTINUATION, 2)) + b'"}'   # fragmented
              + text_frame(b"-a\r\n") + close_frame(1001, "bye"))
    expected = [ACK, Payload(message), Ping(b"p"), Payload(b'{"m"}'), Refused("a"), Closed(1001, "bye")]
    assert WsFrameParser(1024).feed(stream) == expected
    assert feed_bytewise(WsFrameParser(1024), stream) == expected


@pytest.mark.parametrize("stream, problem", [
    (client_frame(OP_TEXT, b"x", MASK), "masked"),
    (bytes((0x80 | 0x40 | OP_TEXT, 0)), "reserved"),
    (bytes((0x80 | 0x3, 0)), "opcode"),
    (bytes((OP_CLOSE, 0)), "control"),
    (bytes((0x80 | OP_TEXT, 127)) + (1 << 40).to_bytes(8, "big"), "more than 1024"),
    (bytes((0x80 | OP_CONTINUATION, 0)), "without a message"),
])
def test_server_frame_violations(stream: bytes, problem: str) -> None:
    with pytest.raises(WireError, match=problem):
        WsFrameParser(1024).feed(stream)
