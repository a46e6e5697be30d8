"""Properties of comet.ack_codec (what a client sends after subscribing: heartbeats and acks) under arbitrary,
split, truncated and mutated input: only ProtocolError (``-p`` for a malformed command, no reply for a stray
byte), the same heartbeats and acks whatever the split, and never more than MAX_TCP_ACK bytes kept between reads."""
from __future__ import annotations

from typing import Any

from hypothesis import given
from hypothesis import strategies as st

from comet.ack_codec import MAX_MID, MAX_TCP_ACK, parse_tcp_input, parse_ws_ack, tcp_ack, ws_ack
from comet.protocol import REPLY_PARAM, ProtocolError
from tests.fuzz.budget import FUZZ, FUZZ_LIGHT
from tests.fuzz.strategies import mutated, splits

mids = st.integers(1, MAX_MID)
# What a subscribed TCP client sends: heartbeats and ack commands, in any order.
client_inputs = st.lists(st.one_of(st.integers(1, 4).map(lambda n: ("h", n)), mids.map(lambda mid: ("ack", mid))),
                         max_size=8)


def wire(items: list[tuple[str, int]]) -> bytes:
    return b"".join(b"h" * value if kind == "h" else tcp_ack(value) for kind, value in items)


def receive(chunks: list[bytes]) -> tuple[str, Any]:
    """Feed the reads as comet/tcp.py does (the rest of one read goes before the next).

    ("ok", (heartbeats, acks, rest)) or ("error", reply); checks the bound on what is kept between reads.
    """
    rest, beats, acks = b"", 0, list[int]()
    for chunk in chunks:
        try:
            parsed = parse_tcp_input(rest + chunk)
        except ProtocolError as exc:
            assert exc.reply in (REPLY_PARAM, b"")
            return "error", exc.reply
        assert len(parsed.rest) <= MAX_TCP_ACK, "more than one ack command kept between reads"
        assert parsed.rest[:1] in (b"", b"*")
        rest, beats, acks = parsed.rest, beats + parsed.heartbeats, acks + parsed.acks
    return "ok", (beats, acks, rest)


@FUZZ
@given(st.data(), client_inputs)
def test_heartbeats_and_acks_split_anywhere_give_the_same_counts(data, items):
    expected = ("ok", (sum(n for kind, n in items if kind == "h"), [mid for kind, mid in items if kind == "ack"], b""))
    assert receive([wire(items)]) == receive(data.draw(splits(wire(items)))) == expected


@FUZZ
@given(st.data(), st.binary(max_size=120) | st.lists(st.sampled_from(
    (b"h", b"*", b"2", b"\r\n", b"$3", b"ack", b"$19", b"$", b"1", b"x", b"\r")), max_size=20).map(b"".join))
def test_arbitrary_input_only_raises_protocol_error_and_split_changes_nothing(data, raw):
    whole = receive([raw])
    assert receive(data.draw(splits(raw))) == whole


@FUZZ
@given(st.data(), client_inputs)
def test_mutated_input_only_raises_protocol_error_and_split_changes_nothing(data, items):
    raw = data.draw(mutated(wire(items)))
    assert receive(data.draw(splits(raw))) == receive([raw])


@FUZZ_LIGHT
@given(client_inputs, mids, st.data())
def test_a_truncated_ack_is_kept_for_the_next_read(items, mid, data):
    command = tcp_ack(mid)
    cut_at = data.draw(st.integers(1, len(command) - 1))
    status, (_, acks, rest) = receive([wire(items) + command[:cut_at]])
    assert status == "ok" and rest == command[:cut_at]
    assert receive([wire(items) + command[:cut_at], command[cut_at:]])[1][1] == acks + [mid]


@FUZZ_LIGHT
@given(mids)
def test_ws_ack_round_trip(mid):
    assert parse_ws_ack(ws_ack(mid).encode()) == mid


@FUZZ_LIGHT
@given(st.binary(max_size=30) | st.integers().map(lambda n: b"a%d" % n) | st.text(max_size=24).map(
    lambda text: b"a" + text.encode()))
def test_ws_ack_on_arbitrary_payloads(payload):
    try:
        mid = parse_ws_ack(payload)
    except ProtocolError:
        return
    digits = payload[1:]
    assert payload[:1] == b"a" and digits.isdigit() and 1 <= len(digits) <= 19 and int(digits) == mid
    assert 1 <= mid <= MAX_MID
