"""Properties of comet.protocol (the TCP subscribe command) under arbitrary, split, merged, truncated, oversized and
mutated input: only ProtocolError ever escapes, a split never changes the result, the buffer stays bounded."""
from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from comet.protocol import (
    MAX_HEADER_LINE, REPLY_PARAM, ProtocolError, Subscribe, SubscribeLimits, SubscribeParser, count_heartbeats,
    parse_command, validate_subscribe,
)
from tests.fuzz.budget import FUZZ, FUZZ_LIGHT
from tests.fuzz.strategies import C0_AND_DEL, command, mutated, splits, subscribe_specs

LIMITS = SubscribeLimits()
SMALL = SubscribeLimits(max_arg_bytes=32, max_key_bytes=16)  # reaches every limit with short inputs


def buffer_bound(limits: SubscribeLimits) -> int:
    """What the docstring promises a waiting parser holds at most: one header line or one argument + CRLF."""
    return max(MAX_HEADER_LINE, limits.max_arg_bytes + 2)


def run(chunks: list[bytes], limits: SubscribeLimits = LIMITS) -> tuple[str, Any]:
    """Feed ``chunks`` in order as the TCP transport does (stop at the command or the first error).

    Returns ("ok", (Subscribe, remainder + the chunks after it)), ("error", reply) or ("incomplete", None).
    Checks the buffer bound after every read that left the parser waiting.
    """
    parser = SubscribeParser(limits)
    for index, chunk in enumerate(chunks):
        try:
            result = parser.feed(chunk)
        except ProtocolError as exc:
            assert exc.reply == REPLY_PARAM, "a malformed command is answered with -p"
            return "error", exc.reply
        if result is not None:
            return "ok", (result, parser.remainder + b"".join(chunks[index + 1:]))
        assert len(parser._buffer) < buffer_bound(limits), "parser buffered more than its documented bound"
    return "incomplete", None


def check_valid(subscribe: Subscribe, limits: SubscribeLimits) -> None:
    """What every accepted subscribe satisfies (docs/protocol.md table)."""
    key = subscribe.key.encode()
    assert 1 <= len(key) <= limits.max_key_bytes
    assert not any(ch in C0_AND_DEL for ch in subscribe.key)
    assert limits.min_heartbeat <= subscribe.heartbeat <= limits.max_heartbeat
    assert len(subscribe.token.encode()) <= limits.max_arg_bytes
    assert len(subscribe.version.encode()) <= limits.max_arg_bytes


@FUZZ
@given(st.data(), st.binary(max_size=300), st.sampled_from([LIMITS, SMALL]))
def test_arbitrary_bytes_only_raise_protocol_error_stay_bounded_and_split_changes_nothing(data, raw, limits):
    whole = run([raw], limits)
    assert run(data.draw(splits(raw)), limits) == whole
    if whole[0] == "ok":
        check_valid(whole[1][0], limits)


@FUZZ
@given(st.data(), subscribe_specs(), st.integers(0, 5), st.binary(max_size=64))
def test_valid_command_split_anywhere_merged_with_what_follows_or_truncated(data, spec, beats, after):
    """Split anywhere: the same Subscribe as whole; what follows it (heartbeats, the next command, garbage) is
    the remainder, exactly; any strict prefix is incomplete, never an error."""
    wire = command(spec.args)
    expected = Subscribe(spec.key, spec.heartbeat, spec.token or "", spec.version or "")
    assert run([wire + b"h" * beats]) == run(data.draw(splits(wire + b"h" * beats))) == ("ok", (expected, b"h" * beats))
    assert run(data.draw(splits(wire + after))) == ("ok", (expected, after))
    assert run([wire[:data.draw(st.integers(0, len(wire) - 1))]]) == ("incomplete", None)
    assert expected.new_form == (spec.version not in (None, ""))


@FUZZ
@given(st.data(), st.lists(st.binary(max_size=40), min_size=1, max_size=5), st.sampled_from([LIMITS, SMALL]))
def test_well_framed_arguments_give_what_parse_command_gives(data, args, limits):
    """The framing layer is transparent: any well-framed command parses as its arguments do."""
    wire = command(args)
    framed = run(data.draw(splits(wire)), limits)
    if any(len(arg) > limits.max_arg_bytes for arg in args):
        assert framed == ("error", REPLY_PARAM)
        return
    try:
        expected = ("ok", (parse_command(args, limits), b""))
    except ProtocolError as exc:
        expected = ("error", exc.reply)
    assert framed == expected


@FUZZ
@given(st.data(), subscribe_specs(), st.sampled_from([LIMITS, SMALL]))
def test_mutated_valid_commands_never_escape_protocol_error(data, spec, limits):
    wire = data.draw(mutated(command(spec.args)))
    whole = run([wire], limits)
    assert run(data.draw(splits(wire)), limits) == whole
    if whole[0] == "ok":
        check_valid(whole[1][0], limits)


@FUZZ_LIGHT
@given(st.integers(SMALL.max_arg_bytes + 1, 10**10 - 1), st.integers(1, 5), st.data())
def test_oversized_argument_is_refused_from_its_length_line(size, argc, data):
    """An argument longer than max_arg_bytes is refused before a byte of it is buffered."""
    header = b"*%d\r\n$%d\r\n" % (argc, size)
    parser = SubscribeParser(SMALL)
    with pytest.raises(ProtocolError):
        for chunk in data.draw(splits(header)):
            parser.feed(chunk)
    assert len(parser._buffer) < buffer_bound(SMALL)


@FUZZ_LIGHT
@given(st.binary(min_size=1, max_size=64).filter(lambda raw: b"\n" not in raw[:MAX_HEADER_LINE]), st.data())
def test_a_header_line_without_newline_is_refused_at_its_length_limit(raw, data):
    """Bytes without a newline are never buffered past one header line, whatever their split."""
    wire = b"*" + raw
    outcome = run(data.draw(splits(wire)))
    if len(wire) >= MAX_HEADER_LINE:
        assert outcome == ("error", REPLY_PARAM)
    else:
        assert outcome[0] in ("error", "incomplete")


@FUZZ_LIGHT
@given(st.binary(max_size=200))
def test_count_heartbeats_counts_h_and_refuses_anything_else(raw):
    try:
        count = count_heartbeats(raw)
    except ProtocolError as exc:
        assert raw.strip(b"h") and exc.reply == b"", "a stray byte closes the connection without a reply"
        return
    assert count == len(raw) and not raw.strip(b"h")


@FUZZ_LIGHT
@given(st.binary(max_size=140), st.binary(max_size=12), st.binary(max_size=40), st.binary(max_size=40),
       st.sampled_from([LIMITS, SMALL]))
def test_validate_subscribe_on_arbitrary_parameters(key, heartbeat, token, version, limits):
    """The WebSocket query values reach validate_subscribe as raw bytes: any bytes, only ProtocolError."""
    try:
        subscribe = validate_subscribe(key, heartbeat, token, version, limits)
    except ProtocolError as exc:
        assert exc.reply == REPLY_PARAM
        return
    check_valid(subscribe, limits)
    assert subscribe.key.encode() == key and subscribe.heartbeat == int(heartbeat)


@FUZZ_LIGHT
@given(st.lists(st.binary(max_size=20), max_size=7))
def test_parse_command_on_arbitrary_arguments(args):
    try:
        subscribe = parse_command(args)
    except ProtocolError as exc:
        assert exc.reply == REPLY_PARAM
        return
    assert args[0] == b"sub" and 3 <= len(args) <= 5
    check_valid(subscribe, LIMITS)
