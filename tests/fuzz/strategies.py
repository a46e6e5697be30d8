"""Hypothesis strategies and wire builders shared by the fuzz properties.

Builders make the bytes a client sends (a TCP subscribe command, an HTTP upgrade request, masked WebSocket frames)
independently of the code under test, so a round trip through the parser checks the parser against the wire
format of docs/protocol.md, not against itself. ``splits`` cuts bytes into the reads a socket could return;
``mutated`` applies random byte-level damage to valid input.
"""
from __future__ import annotations

import base64
import struct
from dataclasses import dataclass
from typing import Any, Iterator, Sequence
from urllib.parse import quote_from_bytes

from hypothesis import strategies as st

C0_AND_DEL = "".join(map(chr, range(32))) + "\x7f"

# -- splitting and damaging bytes ----------------------------------------------------------------------------


def cut(data: bytes, points: Sequence[int]) -> list[bytes]:
    """``data`` cut at ``points`` (any order, duplicates allowed): the reads a socket could return."""
    bounds = [0, *sorted(p for p in set(points) if 0 < p < len(data)), len(data)]
    return [data[a:b] for a, b in zip(bounds, bounds[1:]) if b > a] or [b""]


@st.composite
def splits(draw: st.DrawFn, data: bytes, max_cuts: int = 12) -> list[bytes]:
    """``data`` as a list of chunks, cut at up to ``max_cuts`` arbitrary points (or byte by byte)."""
    if len(data) > 1 and draw(st.integers(0, 9)) == 0:
        return [data[i:i + 1] for i in range(len(data))]
    points = draw(st.lists(st.integers(0, len(data)), max_size=max_cuts))
    return cut(data, points)


def _mutate_once(draw: st.DrawFn, data: bytearray) -> None:
    kind = draw(st.sampled_from(("flip", "set", "insert", "delete", "duplicate", "truncate", "digit")))
    at = draw(st.integers(0, max(0, len(data) - 1)))
    if kind == "insert" or not data:
        data[at:at] = draw(st.binary(min_size=1, max_size=8))
    elif kind == "flip":
        data[at] ^= 1 << draw(st.integers(0, 7))
    elif kind == "set":
        data[at] = draw(st.sampled_from((0, 0x0A, 0x0D, 0x20, 0x24, 0x2A, 0x7F, 0x80, 0xFF, draw(st.integers(0, 255)))))
    elif kind == "delete":
        del data[at:at + draw(st.integers(1, 4))]
    elif kind == "duplicate":
        end = at + draw(st.integers(1, 16))
        data[at:at] = data[at:end]
    elif kind == "truncate":
        del data[at:]
    else:  # a digit changed: lengths that no longer match, argc out of range
        data[at] = draw(st.sampled_from(b"0123456789"))


@st.composite
def mutated(draw: st.DrawFn, data: bytes, max_mutations: int = 4) -> bytes:
    """``data`` with 1..max_mutations random byte-level mutations."""
    buffer = bytearray(data)
    for _ in range(draw(st.integers(1, max_mutations))):
        _mutate_once(draw, buffer)
    return bytes(buffer)


# -- TCP subscribe commands (docs/protocol.md, "TCP") --------------------------------------------------------

# Surrogates excluded by category, not by codec="utf-8": the codec's table costs seconds to build per process.
key_texts = st.text(st.characters(exclude_categories=["Cs"], exclude_characters=C0_AND_DEL), min_size=1,
                    max_size=40).filter(lambda text: len(text.encode()) <= 128)
utf8_texts = st.text(st.characters(exclude_categories=["Cs"]), max_size=24)


@dataclass(frozen=True)
class SubscribeSpec:
    """What a valid subscribe carries; ``args`` are the command's arguments as sent."""

    key: str
    heartbeat: int
    token: str | None
    version: str | None
    heartbeat_text: str

    @property
    def args(self) -> list[bytes]:
        args = [b"sub", self.key.encode(), self.heartbeat_text.encode()]
        if self.token is not None or self.version is not None:
            args.append((self.token or "").encode())
        if self.version is not None:
            args.append(self.version.encode())
        return args


@st.composite
def subscribe_specs(draw: st.DrawFn) -> SubscribeSpec:
    heartbeat = draw(st.integers(30, 3600))
    zeros = draw(st.integers(0, 10 - len(str(heartbeat))))  # at most 10 digits in all
    version = draw(st.none() | utf8_texts)
    token = draw(st.none() | utf8_texts) if version is None else draw(utf8_texts)
    return SubscribeSpec(draw(key_texts), heartbeat, token, version, "0" * zeros + str(heartbeat))


def command(args: Sequence[bytes]) -> bytes:
    """``*argc`` then ``$len arg`` for each argument: the Redis request format of a subscribe command."""
    return b"*%d\r\n" % len(args) + b"".join(b"$%d\r\n%b\r\n" % (len(arg), arg) for arg in args)


# -- HTTP upgrade requests (docs/protocol.md, "WebSocket") ---------------------------------------------------

header_names = st.text(st.sampled_from("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_!#$%&'*+.^`|~"),
                       min_size=1, max_size=12)
header_values = st.binary(max_size=24).map(
    lambda raw: bytes(b if 0x20 <= b != 0x7F else 0x2E for b in raw).decode("latin-1").strip())
REQUIRED_HEADERS = ("host", "upgrade", "connection", "sec-websocket-key", "sec-websocket-version")


def random_case(draw: st.DrawFn, text: str) -> str:
    return (text, text.lower(), text.upper(), text.title())[draw(st.integers(0, 3))]


@dataclass(frozen=True)
class UpgradeSpec:
    """A valid upgrade request: its query values (raw bytes as sent) and its Sec-WebSocket-Key."""

    query: dict[str, list[bytes]]
    ws_key: str
    head: bytes  # without the blank line that ends it
    newline: bytes


@st.composite
def upgrade_specs(draw: st.DrawFn, drop: str | None = None) -> UpgradeSpec:
    """A valid ``GET /sub`` upgrade request (``drop``: leave out that required header)."""
    names = draw(st.lists(st.sampled_from(("key", "heartbeat", "token", "ver", "x")), max_size=4))
    query: dict[str, list[bytes]] = {}
    for name in names:
        query.setdefault(name, []).append(draw(st.binary(max_size=12)))
    query_text = "&".join(f"{name}={quote_from_bytes(value)}" for name, values in query.items() for value in values)
    ws_key = base64.b64encode(draw(st.binary(min_size=16, max_size=16))).decode()
    headers = [
        ("Host", draw(st.sampled_from(("comet", "127.0.0.1:6968", "[::1]:6968")))),
        ("Upgrade", random_case(draw, "websocket")),
        ("Connection", draw(st.sampled_from(("Upgrade", "upgrade", "keep-alive, Upgrade", "Upgrade,close")))),
        ("Sec-WebSocket-Key", ws_key),
        ("Sec-WebSocket-Version", draw(st.sampled_from(("13", "8", "7")))),
    ]
    headers = [(random_case(draw, name), value) for name, value in headers if name.lower() != drop]
    extra = draw(st.lists(st.tuples(header_names, header_values), max_size=2))
    headers += [(name, value) for name, value in extra if name.lower() not in REQUIRED_HEADERS]
    headers = draw(st.permutations(headers))
    newline = draw(st.sampled_from((b"\r\n", b"\n")))
    lines = [f"GET /sub{'?' + query_text if query_text or draw(st.booleans()) else ''} HTTP/1.1"]
    lines += [f"{name}:{draw(st.sampled_from(('', ' ', '  ')))}{value}" for name, value in headers]
    head = newline.join(line.encode("latin-1") for line in lines)
    return UpgradeSpec(query, ws_key, head, newline)


# -- WebSocket frames (RFC 6455 section 5) -------------------------------------------------------------------

OP_CONTINUATION, OP_TEXT, OP_BINARY, OP_CLOSE, OP_PING, OP_PONG = 0x0, 0x1, 0x2, 0x8, 0x9, 0xA


def client_frame(opcode: int, payload: bytes, *, fin: bool = True, mask: bytes = b"\x00\x00\x00\x00",
                 length_form: int = 0) -> bytes:
    """A masked client frame; ``length_form`` 0 = the shortest length encoding, 16 or 64 = a longer one (RFC 6455
    5.2 asks senders for the shortest; the comet accepts a longer one in a data frame, refuses it in a control
    frame with 1002, as it can only mean a payload over 125 bytes)."""
    size = len(payload)
    first = (0x80 if fin else 0) | opcode
    if size < 126 and length_form == 0:
        header = bytes((first, 0x80 | size))
    elif size < 1 << 16 and length_form in (0, 16):
        header = bytes((first, 0x80 | 126)) + struct.pack(">H", size)
    else:
        header = bytes((first, 0x80 | 127)) + struct.pack(">Q", size)
    key = (mask * (size // 4 + 1))[:size]
    return header + mask + bytes(a ^ b for a, b in zip(payload, key))


def server_frames(data: bytes) -> Iterator[tuple[bool, int, bytes]]:
    """Decode unmasked server frames as ``(fin, opcode, payload)``; AssertionError on anything malformed."""
    pos = 0
    while pos < len(data):
        assert len(data) - pos >= 2, "truncated server frame header"
        first, second = data[pos], data[pos + 1]
        assert not first & 0x70, "server frame with reserved bits"
        assert not second & 0x80, "server frames are never masked"
        size, pos = second & 0x7F, pos + 2
        if size == 126:
            size, pos = struct.unpack_from(">H", data, pos)[0], pos + 2
        elif size == 127:
            size, pos = struct.unpack_from(">Q", data, pos)[0], pos + 8
        assert len(data) - pos >= size, "truncated server frame payload"
        yield bool(first & 0x80), first & 0x0F, data[pos:pos + size]
        pos += size


@dataclass(frozen=True)
class FrameStream:
    """Client frames and the messages a correct parser yields for them, in order."""

    data: bytes
    messages: list[tuple[int, bytes]]
    max_size: int


masks = st.binary(min_size=4, max_size=4)
length_forms = st.sampled_from((0, 0, 0, 16, 64))


@st.composite
def frame_streams(draw: st.DrawFn, max_size: int | None = None) -> FrameStream:
    """Valid client traffic: data messages (some fragmented, with control frames between the fragments) and
    control frames, each at most ``max_size`` (drawn when not given)."""
    limit = max_size if max_size is not None else draw(st.sampled_from((1, 16, 125, 126, 300, 4096)))
    frames: list[bytes] = []
    messages: list[tuple[int, bytes]] = []

    def control() -> None:
        opcode = draw(st.sampled_from((OP_PING, OP_PONG)))
        payload = draw(st.binary(max_size=125))
        frames.append(client_frame(opcode, payload, mask=draw(masks)))  # a control frame's length is 7-bit
        messages.append((opcode, payload))

    for _ in range(draw(st.integers(0, 6))):
        if draw(st.integers(0, 3)) == 0:
            control()
            continue
        opcode = draw(st.sampled_from((OP_TEXT, OP_BINARY)))
        payload = draw(st.binary(max_size=min(limit, 600)))
        pieces = cut(payload, draw(st.lists(st.integers(0, len(payload)), max_size=3)))
        if draw(st.booleans()):
            pieces.append(b"")  # an empty last fragment is legal
        for index, piece in enumerate(pieces):
            if index and draw(st.integers(0, 3)) == 0:
                control()  # RFC 6455 5.4: control frames may be injected between fragments
            frames.append(client_frame(opcode if index == 0 else OP_CONTINUATION, piece, fin=index == len(pieces) - 1,
                                       mask=draw(masks), length_form=draw(length_forms)))
        messages.append((opcode, payload))
    if draw(st.booleans()):
        payload = draw(st.sampled_from((b"", b"\x03\xe8", b"\x03\xe9bye", b"\x0f\xa0")))
        frames.append(client_frame(OP_CLOSE, payload, mask=draw(masks)))
        messages.append((OP_CLOSE, payload))
    return FrameStream(b"".join(frames), messages, limit)


# -- values: JSON documents and msgpack objects --------------------------------------------------------------

# Small recursive values: generating deep ones costs more time than the codecs spend on them.
json_values: st.SearchStrategy[Any] = st.recursive(
    st.none() | st.booleans() | st.integers(-(1 << 70), 1 << 70) | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=10),
    lambda children: st.lists(children, max_size=3) | st.dictionaries(st.text(max_size=6), children, max_size=3),
    max_leaves=6,
)

msgpack_scalars = (st.none() | st.booleans() | st.integers(-(1 << 63), (1 << 64) - 1)
                   | st.floats(allow_nan=False) | st.text(max_size=10) | st.binary(max_size=10))
msgpack_values: st.SearchStrategy[Any] = st.recursive(
    msgpack_scalars,
    lambda children: st.lists(children, max_size=3) | st.dictionaries(st.text(max_size=6), children, max_size=3),
    max_leaves=6,
)


def chunks_of(data: bytes, size: int) -> list[bytes]:
    return [data[i:i + size] for i in range(0, len(data), size)] or [b""]
