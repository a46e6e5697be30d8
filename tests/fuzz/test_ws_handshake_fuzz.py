"""Properties of comet.ws_handshake (the HTTP upgrade of ``GET /sub``) under arbitrary, split, oversized and
mutated requests: only HandshakeError with a documented status, a split never changes the result, the head
buffer stays within MAX_REQUEST_HEAD plus one read."""
from __future__ import annotations

from typing import Any

from hypothesis import given
from hypothesis import strategies as st

from comet.ws_handshake import (
    MAX_REQUEST_HEAD, HandshakeError, RequestHeadParser, UpgradeRequest, accept_value, parse_upgrade,
)
from tests.fuzz.budget import FUZZ, FUZZ_LIGHT
from tests.fuzz.strategies import REQUIRED_HEADERS, chunks_of, mutated, splits, upgrade_specs

DOCUMENTED_STATUS = {400, 404, 405, 426, 431}  # docs/protocol.md: "HTTP 400/404/405/426/431 and is closed"


def collect(chunks: list[bytes]) -> tuple[str, Any]:
    """Feed the chunks as the WebSocket transport does; ("head", (head, rest)), ("error", status) or ("waiting",)."""
    parser = RequestHeadParser()
    for index, chunk in enumerate(chunks):
        try:
            parsed = parser.feed(chunk)
        except HandshakeError as exc:
            assert exc.status == 431
            return "error", exc.status
        if parsed is not None:
            head, rest = parsed
            return "head", (head, rest + b"".join(chunks[index + 1:]))
        assert len(parser._buffer) <= MAX_REQUEST_HEAD, "head buffer past its limit"
    return "waiting", None


def upgrade(head: bytes) -> tuple[str, Any]:
    """parse_upgrade's result as a comparable value; checks every refusal is documented and well-formed."""
    try:
        request = parse_upgrade(head)
    except HandshakeError as exc:
        assert exc.status in DOCUMENTED_STATUS
        response = exc.response()
        status_line, _, rest = response.partition(b"\r\n")
        assert status_line.startswith(b"HTTP/1.1 %d " % exc.status) and b"\r\nConnection: close\r\n" in b"\r\n" + rest
        head_part, _, body = response.partition(b"\r\n\r\n")
        assert b"Content-Length: %d\r\n" % len(body) in head_part + b"\r\n"
        return "refused", exc.status
    assert isinstance(request, UpgradeRequest)
    assert request.response().startswith(b"HTTP/1.1 101 Switching Protocols\r\n")
    return "upgraded", (request.query, request.accept)


@FUZZ
@given(st.data(), st.binary(max_size=400))
def test_arbitrary_bytes_only_raise_handshake_error_and_split_changes_nothing(data, raw):
    whole = collect([raw])
    assert collect(data.draw(splits(raw))) == whole
    if whole[0] == "head":
        upgrade(whole[1][0])


@FUZZ
@given(st.binary(max_size=600))
def test_parse_upgrade_on_arbitrary_heads(head):
    upgrade(head)


@FUZZ
@given(st.data(), upgrade_specs(), st.binary(max_size=40))
def test_valid_upgrade_split_anywhere_with_frames_after_it(data, spec, after):
    wire = spec.head + spec.newline * 2 + after
    status, (head, rest) = collect(data.draw(splits(wire)))
    assert status == "head" and head == spec.head and rest == after
    assert upgrade(head) == ("upgraded", (spec.query, accept_value(spec.ws_key)))


@FUZZ
@given(st.data(), upgrade_specs())
def test_mutated_upgrade_requests_are_upgraded_or_refused_with_a_documented_status(data, spec):
    wire = data.draw(mutated(spec.head + spec.newline * 2))
    whole = collect([wire])
    assert collect(data.draw(splits(wire))) == whole
    if whole[0] == "head":
        upgrade(whole[1][0])


@FUZZ_LIGHT
@given(st.data(), st.integers(256, 16384))
def test_a_head_that_never_ends_is_refused_with_431_within_one_read(data, read_size):
    """Header lines without the blank line: 431 as soon as the head passes MAX_REQUEST_HEAD, never later."""
    line = data.draw(st.binary(min_size=1, max_size=64).filter(lambda raw: b"\n" not in raw)) + b"\r\n"
    wire = b"GET /sub HTTP/1.1\r\n" + line * (MAX_REQUEST_HEAD // len(line) + 2)
    parser, fed = RequestHeadParser(), 0
    for chunk in chunks_of(wire, read_size):
        try:
            assert parser.feed(chunk) is None
        except HandshakeError as exc:
            assert exc.status == 431
            assert MAX_REQUEST_HEAD < fed + len(chunk) <= MAX_REQUEST_HEAD + read_size
            return
        fed += len(chunk)
        assert len(parser._buffer) <= MAX_REQUEST_HEAD
    raise AssertionError("an endless head was never refused")


@FUZZ_LIGHT
@given(st.data(), st.sampled_from(REQUIRED_HEADERS), st.sampled_from(["POST", "PUT", "HEAD", "DELETE", "OPTIONS"]),
       st.text(st.characters(min_codepoint=0x21, max_codepoint=0x7E), min_size=1, max_size=5))
def test_each_refusal_gets_its_documented_status(data, header, method, version):
    """A missing required header: 400; another method: 405; another path: 404; another version: 426."""
    spec = data.draw(upgrade_specs(drop=header))
    assert upgrade(spec.head) == ("refused", 400)
    spec = data.draw(upgrade_specs())
    assert upgrade(spec.head.replace(b"GET ", method.encode() + b" ", 1)) == ("refused", 405)
    assert upgrade(spec.head.replace(b"GET /sub", b"GET /pub", 1)) == ("refused", 404)
    lines = [line for line in spec.head.split(spec.newline) if not line.lower().startswith(b"sec-websocket-version:")]
    head = spec.newline.join(lines + [b"Sec-WebSocket-Version: " + version.encode()])
    assert upgrade(head)[0] == ("upgraded" if version in ("7", "8", "13") else "refused")
    if version not in ("7", "8", "13"):
        assert upgrade(head) == ("refused", 426)
