"""Deterministic hostile inputs for the live socket fuzzers, and what docs/protocol.md says the node answers.

Each generator takes a ``random.Random`` (seeded from tests/fuzz/budget.py) and returns bytes a hostile or broken
client could send on one connection. Each ``expect_*`` function works out the documented answer with the pure
codecs, which the property tests have checked on their own, so the live tests check the transports: that what
reaches the socket is exactly the documented reply, close code or RPC response, and that nothing else happens.
"""
from __future__ import annotations

import random
import struct
from dataclasses import dataclass, field
from typing import Any, Callable
from urllib.parse import quote_from_bytes

import msgpack

from comet.ack_codec import WS_ACK_PREFIX, parse_tcp_input, parse_ws_ack, tcp_ack
from comet.protocol import REPLY_OK, ProtocolError, SubscribeParser, validate_subscribe
from comet.ws_frames import (
    CLOSE_POLICY_VIOLATION, DATA_OPCODES, OP_CLOSE, OP_PING, FrameError, FrameParser, close_code, close_reply,
)
from comet.ws_handshake import HandshakeError, RequestHeadParser, parse_upgrade
from thirdparty.rpc_codec import Decoder, Request, RpcProtocolError, encode_notify, encode_request, encode_response
from tests.fuzz.strategies import OP_BINARY, OP_CONTINUATION, OP_PONG, OP_TEXT, client_frame, command

MAX_WS_FRAME = 4096  # comet [limits] max_ws_frame default


def random_bytes(rng: random.Random, low: int = 1, high: int = 200) -> bytes:
    return rng.randbytes(rng.randint(low, high))


def mutate(rng: random.Random, data: bytes, count: int = 3) -> bytes:
    """``data`` with 1..count byte-level mutations (flip, set, insert, delete, truncate)."""
    buffer = bytearray(data)
    for _ in range(rng.randint(1, count)):
        at = rng.randrange(len(buffer)) if buffer else 0
        kind = rng.choice(("flip", "set", "insert", "delete", "truncate")) if buffer else "insert"
        if kind == "flip":
            buffer[at] ^= 1 << rng.randrange(8)
        elif kind == "set":
            buffer[at] = rng.choice((0, 10, 13, 32, 36, 42, 104, 127, 128, 255, rng.randrange(256)))
        elif kind == "insert":
            buffer[at:at] = rng.randbytes(rng.randint(1, 6))
        elif kind == "delete":
            del buffer[at:at + rng.randint(1, 4)]
        else:
            del buffer[at:]
    return bytes(buffer)


def pick(rng: random.Random, makers: list[Callable[[random.Random], bytes]], count: int) -> list[bytes]:
    """``count`` inputs, cycling through every maker first so each kind of input is sent at least once."""
    return [makers[i % len(makers)](rng) if i < len(makers) else rng.choice(makers)(rng) for i in range(count)]


# -- TCP listener ------------------------------------------------------------------------------------------


def _key(rng: random.Random) -> str:
    return "fz-" + "".join(rng.choice("abcdefghij0123456789-_.é") for _ in range(rng.randint(1, 20)))


def _sub(rng: random.Random, *, heartbeat: bytes = b"30", key: bytes | None = None, extra: int = 0) -> bytes:
    args = [b"sub", key if key is not None else _key(rng).encode(), heartbeat]
    args += [rng.randbytes(rng.randint(0, 8)) for _ in range(extra)]
    return command(args)


TCP_MAKERS: list[Callable[[random.Random], bytes]] = [
    lambda rng: random_bytes(rng),
    lambda rng: mutate(rng, _sub(rng, extra=rng.randint(0, 2))),
    lambda rng: (lambda wire: wire[:rng.randrange(len(wire))])(_sub(rng)),               # truncated
    lambda rng: rng.choice((b"*0\r\n", b"*6\r\n", b"*-1\r\n", b"*99999999999\r\n", b"*\r\n", b"*1\n")),
    lambda rng: b"*3\r\n$%d\r\n" % rng.choice((4097, 65536, 9_999_999_999)),                # oversized argument
    lambda rng: b"*" + b"1" * rng.randint(12, 64),                                         # endless header line
    lambda rng: _sub(rng) + rng.choice((b"x", b"hhx", b"+h\r\n", b"\x00", b"GET / HTTP/1.1\r\n")),
    lambda rng: _sub(rng, key=rng.choice((b"", b"a\nb", b"\x7f", b"k" * 129, b"\xff\xfe", b"a\rb"))),
    lambda rng: _sub(rng, heartbeat=rng.choice((b"29", b"3601", b"abc", b"-30", b"1e3", b" 30", b"", b"3" * 11))),
    lambda rng: command([rng.choice((b"pub", b"SUB", b"", b"sub ")), b"k", b"30"]),
    lambda rng: _sub(rng) + b"h" * rng.randint(1, 40),                                   # up to a flood
    lambda rng: _sub(rng) + _sub(rng),
    lambda rng: b"*3\r\n$3\r\nsubX\r\n$1\r\nk\r\n$2\r\n30\r\n",                            # length mismatch
    lambda rng: _sub(rng).replace(b"\r\n", b"\n"),
    lambda rng: b"GET /sub?key=k&heartbeat=30 HTTP/1.1\r\nHost: x\r\n\r\n",
    lambda rng: command([b"sub", b"k", b"30", rng.randbytes(4097)]),                       # argument of 4 KiB + 1
    lambda rng: _sub(rng) + b"h" + tcp_ack(rng.choice((1, 17_000_000_000_000_000, (1 << 63) - 1))) + b"hh",
    lambda rng: _sub(rng) + rng.choice((b"*2\r\n$3\r\nack\r\n$2\r\n1x\r\n", b"*2\r\n$3\r\nack\r\n$20\r\n",
                                        b"*2\r\n$3\r\nack\r\n$1\r\n0\r\n", b"*3\r\n$3\r\nsub\r\n",
                                        tcp_ack(5)[:-3], b"*2\r\n$3\r\nack\r\n$19\r\n9999999999999999999\r\n")),
    lambda rng: _sub(rng) + mutate(rng, tcp_ack(rng.randint(1, 10**18)) + b"h"),
]


def tcp_inputs(rng: random.Random, count: int) -> list[bytes]:
    return pick(rng, TCP_MAKERS, count)


def expect_tcp(data: bytes, heartbeat_burst: int) -> bytes:
    """What the comet writes before closing, the client having sent ``data`` (one read) and then EOF."""
    parser = SubscribeParser()
    try:
        subscribe = parser.feed(data)
    except ProtocolError as exc:
        return exc.reply
    if subscribe is None:
        return b""  # incomplete: closed at EOF without a reply
    try:  # after subscribing: heartbeats and acks (comet/ack_codec.py)
        beats = parse_tcp_input(parser.remainder).heartbeats
    except ProtocolError as exc:
        return REPLY_OK + exc.reply  # a malformed command: -p; any other byte: closed without a reply
    return REPLY_OK * (1 + (beats if beats <= heartbeat_burst else 0))  # a flood of them: closed, no reply


# -- WebSocket listener: the upgrade -------------------------------------------------------------------------


def upgrade_request(rng: random.Random, query: str | None = None, *, version: str = "13", method: str = "GET",
                    path: str = "/sub", drop: str = "") -> bytes:
    if query is None:
        query = f"key={quote_from_bytes(_key(rng).encode())}&heartbeat=30" + rng.choice(("", "&ver=1", "&token=t"))
    headers = [("Host", "comet"), ("Upgrade", "websocket"), ("Connection", "Upgrade"),
               ("Sec-WebSocket-Key", "dGhlIHNhbXBsZSBub25jZQ=="), ("Sec-WebSocket-Version", version)]
    lines = [f"{method} {path}?{query} HTTP/1.1"] + [f"{name}: {value}" for name, value in headers if name != drop]
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")


UPGRADE_MAKERS: list[Callable[[random.Random], bytes]] = [
    lambda rng: random_bytes(rng) + b"\r\n\r\n",
    lambda rng: mutate(rng, upgrade_request(rng)),
    lambda rng: upgrade_request(rng, method=rng.choice(("POST", "PUT", "HEAD", "OPTIONS"))),
    lambda rng: upgrade_request(rng, path=rng.choice(("/", "/pub", "/sub/", "/SUB", "//sub"))),
    lambda rng: upgrade_request(rng, drop=rng.choice(("Host", "Upgrade", "Connection", "Sec-WebSocket-Key",
                                                     "Sec-WebSocket-Version"))),
    lambda rng: upgrade_request(rng, version=rng.choice(("12", "14", "0", "x", "13, 8"))),
    lambda rng: upgrade_request(rng, rng.choice(("key=&heartbeat=30", "key=k&heartbeat=10", "key=k",
                                                 "key=%0A&heartbeat=30", "key=%FF&heartbeat=30",
                                                 "key=" + "k" * 129 + "&heartbeat=30", "heartbeat=30",
                                                 "key=k&heartbeat=30&token=%FF", "key=k&heartbeat=99999999999"))),
    lambda rng: b"GET /sub HTTP/1.1\r\n" + b"X-Pad: " + b"a" * 70_000 + b"\r\n\r\n",          # 431
    lambda rng: b"GET /sub HTTP/1.1\r\nbad header line\r\n\r\n",
    lambda rng: b"\r\n\r\n",
    lambda rng: upgrade_request(rng)[:rng.randrange(60)],                                     # truncated
    lambda rng: upgrade_request(rng).replace(b"\r\n", b"\n"),
]


def upgrade_inputs(rng: random.Random, count: int) -> list[bytes]:
    return pick(rng, UPGRADE_MAKERS, count)


@dataclass
class UpgradeAnswer:
    """The documented answer to an upgrade request: an HTTP error, or a 101 then the reply frame (and, for a
    refused subscribe, a close frame with code 1000)."""

    http: bytes = b""                          # the whole HTTP error response, or the 101 head
    reply: bytes = b""                         # the reply frame's text after a 101
    close: int | None = None                   # the close code that follows it


def expect_upgrade(data: bytes) -> UpgradeAnswer:
    try:
        parsed = RequestHeadParser().feed(data)
        if parsed is None:
            return UpgradeAnswer()  # incomplete: closed at EOF without an answer
        request = parse_upgrade(parsed[0])
    except HandshakeError as exc:
        return UpgradeAnswer(http=exc.response())
    try:
        validate_subscribe(request.param("key"), request.param("heartbeat"), request.param("token"),
                           request.param("ver"))
    except ProtocolError as exc:
        return UpgradeAnswer(http=request.response(), reply=exc.reply, close=1000)
    return UpgradeAnswer(http=request.response(), reply=REPLY_OK)


# -- WebSocket listener: frames after a successful upgrade ---------------------------------------------------


def _frame(rng: random.Random, opcode: int, payload: bytes, **kwargs: Any) -> bytes:
    return client_frame(opcode, payload, mask=rng.randbytes(4), **kwargs)


FRAME_MAKERS: list[Callable[[random.Random], bytes]] = [
    lambda rng: random_bytes(rng),
    lambda rng: mutate(rng, _frame(rng, OP_TEXT, b"h") + _frame(rng, OP_PING, rng.randbytes(8))),
    lambda rng: _frame(rng, OP_TEXT, b"h") * rng.randint(1, 5),
    lambda rng: _frame(rng, OP_TEXT, b"h") * rng.randint(15, 40),                           # heartbeat flood
    lambda rng: _frame(rng, rng.choice(DATA_OPCODES), rng.randbytes(rng.randint(0, 40))),   # not a heartbeat: 1008
    lambda rng: _frame(rng, OP_PING, rng.randbytes(rng.randint(0, 125))),
    lambda rng: _frame(rng, OP_PING, b"x" * 126),                                          # oversized ping: 1002
    lambda rng: _frame(rng, OP_TEXT, b"h" * (MAX_WS_FRAME + 1)),                           # too big: 1009
    lambda rng: _frame(rng, OP_BINARY, b"", length_form=64)[:2] + struct.pack(">Q", 1 << 62) + rng.randbytes(4),
    lambda rng: _frame(rng, OP_TEXT, b"h")[:1] + bytes((1,)) + b"h",                       # unmasked: 1002
    lambda rng: bytes((0xC1, 0x81)) + rng.randbytes(5),                                    # RSV1 set: 1002
    lambda rng: bytes((0x83, 0x80)) + rng.randbytes(4),                                    # unknown opcode: 1002
    lambda rng: _frame(rng, OP_CONTINUATION, b"h"),                                        # nothing to continue
    lambda rng: _frame(rng, OP_TEXT, b"", fin=False) + _frame(rng, OP_TEXT, b"h"),         # message inside message
    lambda rng: _frame(rng, OP_TEXT, b"", fin=False) + _frame(rng, OP_PING, b"p") + _frame(rng, OP_CONTINUATION, b"h"),
    lambda rng: _frame(rng, OP_CLOSE, rng.choice((b"", b"\x03\xe8", b"\x03\xe8bye", b"\x03\xed", b"\x0b\xb8",
                                                  b"\x00\x00"))),
    lambda rng: _frame(rng, OP_CLOSE, b"\x03"),                                            # 1-byte close: 1002
    lambda rng: _frame(rng, OP_PING, b"fragmented", fin=False),                            # 1002
    lambda rng: _frame(rng, OP_PONG, rng.randbytes(10)) + _frame(rng, OP_TEXT, b"h"),
    lambda rng: _frame(rng, OP_TEXT, b"h")[:-1],                                           # truncated
    lambda rng: _frame(rng, OP_TEXT, b"x") + _frame(rng, OP_TEXT, b"h") + rng.randbytes(8),
    lambda rng: _frame(rng, OP_TEXT, b"a%d" % rng.randint(1, 10**18)) + _frame(rng, OP_TEXT, b"h"),       # ack
    lambda rng: _frame(rng, rng.choice(DATA_OPCODES), rng.choice((b"a", b"a0", b"a-1", b"a1x", b"a" + b"9" * 20))),
]


def frame_inputs(rng: random.Random, count: int) -> list[bytes]:
    return pick(rng, FRAME_MAKERS, count)


@dataclass
class FrameAnswer:
    """What the comet sends after the ``+h`` reply: pongs and heartbeat replies, then possibly a close frame."""

    frames: list[tuple[int, bytes]] = field(default_factory=list)
    close: int | None = None  # the close code sent (None: no code, or no close frame at all)
    close_payload: bytes | None = None  # an echoed close frame's exact payload (b"": an empty close frame)


def expect_frames(reads: list[bytes], heartbeat_burst: int) -> FrameAnswer:
    """The comet's answer when it receives ``reads`` (then EOF), processed as comet/websocket.py documents:
    a ping gets a pong, heartbeats of one read are answered together after it (more than ``heartbeat_burst``:
    close 1008), an ack ``a<mid>`` gets nothing, any other data frame closes with 1008, a close frame is echoed,
    a broken frame closes with its code (1002/1009), or aborts when closing."""
    parser, answer, closing = FrameParser(MAX_WS_FRAME), FrameAnswer(), False
    for data in reads:
        try:
            messages = parser.feed(data)
        except FrameError as exc:
            if not closing:
                answer.close = exc.code
            return answer
        beats = 0
        for opcode, payload in messages:
            if opcode == OP_CLOSE:
                if not closing:
                    reply = close_reply(payload)
                    answer.close, answer.close_payload = close_code(reply[2:]), reply[2:]
                return answer
            if closing:
                continue
            if opcode == OP_PING:
                answer.frames.append((0xA, payload))
            elif opcode in DATA_OPCODES:
                if payload == b"h":
                    beats += 1
                    continue
                if payload.startswith(WS_ACK_PREFIX):
                    try:
                        parse_ws_ack(payload)  # an ack: no answer
                        continue
                    except ProtocolError:
                        pass
                answer.close, closing = CLOSE_POLICY_VIOLATION, True
        if beats > heartbeat_burst and not closing:
            answer.close, closing = CLOSE_POLICY_VIOLATION, True
        elif beats and not closing:
            answer.frames += [(OP_TEXT, REPLY_OK)] * beats
    return answer


# -- MessagePack-RPC listeners -------------------------------------------------------------------------------


def random_value(rng: random.Random, depth: int = 0) -> Any:
    kind = rng.randrange(9 if depth < 2 else 7)
    if kind == 0:
        return None
    if kind == 1:
        return rng.random() < 0.5
    if kind == 2:
        return rng.choice((0, -1, 1, 30, 600, -(1 << 63), (1 << 64) - 1, rng.randint(-1000, 10**12)))
    if kind == 3:
        return rng.random() * rng.choice((1, 1e300, -1e-300))
    if kind == 4:
        return rng.choice(("", "k", "fz-key", "a\nb", "é" * 70, "x" * 200, '{"a":1}', rng.randbytes(6).hex()))
    if kind == 5:
        return rng.choice((b"", b"{}", b'{"a":1}', b"\xff", b"not json", rng.randbytes(rng.randint(0, 30))))
    if kind == 6:
        return rng.choice((rng.randint(0, 10**17), "k"))
    if kind == 7:
        return [random_value(rng, depth + 1) for _ in range(rng.randint(0, 4))]
    return {rng.choice(("k", "m", "", "x")): random_value(rng, depth + 1) for _ in range(rng.randint(0, 3))}


def _params(rng: random.Random) -> list[Any]:
    return [random_value(rng) for _ in range(rng.randint(0, 4))]


def rpc_makers(service: str, methods: tuple[str, ...]) -> list[Callable[[random.Random], bytes]]:
    def request(rng: random.Random) -> bytes:
        return encode_request(rng.randrange(1 << 32), f"{service}.{rng.choice(methods)}", _params(rng))

    def pipelined(rng: random.Random) -> bytes:
        return b"".join(request(rng) for _ in range(rng.randint(2, 5)))

    return [
        lambda rng: random_bytes(rng),
        request,
        pipelined,
        lambda rng: mutate(rng, request(rng)),
        lambda rng: encode_request(rng.randrange(1 << 32), rng.choice(("", "X.Y", f"{service}.", "Nope.Ping",
                                                                        f"{service}.__init__")), []),
        lambda rng: encode_notify(f"{service}.{rng.choice(methods)}", _params(rng)),
        lambda rng: encode_response(rng.randrange(1 << 32), None, random_value(rng)),      # a response from a client
        lambda rng: msgpack.packb(random_value(rng), use_bin_type=True),                  # msgpack, not RPC
        lambda rng: msgpack.packb([0, -1, "X", []]) + msgpack.packb([0, 1 << 32, "X", []]),
        lambda rng: msgpack.packb([0, 1, f"{service}.{methods[0]}", [b"x" * (1 << 20)]], use_bin_type=True),
        lambda rng: b"\xc6\xff\xff\xff\xff",                                               # bin of 4 GiB announced
        lambda rng: b"\x91" * 2000,                                                        # nesting too deep
        lambda rng: request(rng)[:-1],                                                     # truncated
        lambda rng: b"\x94\x00\x01\xa1M\x90" + b"\xd4\x01\x00",                             # request + ext type
        request, request, pipelined,  # after the first round, calls with random params are the most drawn
    ]


def rpc_inputs(rng: random.Random, makers: list[Callable[[random.Random], bytes]], count: int) -> list[bytes]:
    return pick(rng, makers, count)


@dataclass
class RpcAnswer:
    """The msgids the server must answer (one response each) and whether it must close the connection."""

    msgids: list[int]
    closes: bool


def expect_rpc(data: bytes) -> RpcAnswer:
    try:
        frames = Decoder().feed(data)
    except RpcProtocolError:
        return RpcAnswer([], True)  # replies to frames before the broken one may be lost: only EOF is sure
    return RpcAnswer(sorted(frame.msgid for frame in frames if isinstance(frame, Request)), False)
