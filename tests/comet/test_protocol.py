"""comet.protocol: the TCP subscribe command fed whole, split, merged, truncated, oversized and wrong."""
import pytest

from comet.protocol import (
    MAX_HEADER_LINE, REPLY_OK, REPLY_PARAM, ProtocolError, Subscribe, SubscribeLimits, SubscribeParser,
    count_heartbeats, parse_command, validate_subscribe,
)


def command(*args: bytes) -> bytes:
    return b"*%d\r\n" % len(args) + b"".join(b"$%d\r\n%b\r\n" % (len(arg), arg) for arg in args)


DESIGN_EXAMPLE = b"*5\r\n$3\r\nsub\r\n$9\r\nTerry-Mao\r\n$2\r\n30\r\n$0\r\n\r\n$3\r\n1.0\r\n"


def parse_all(data: bytes, limits: SubscribeLimits = SubscribeLimits()) -> tuple[Subscribe | None, bytes]:
    parser = SubscribeParser(limits)
    result = parser.feed(data)
    return result, parser.remainder


def test_replies_are_the_gopush_cluster_bytes():
    assert REPLY_OK == b"+h\r\n"
    assert REPLY_PARAM == b"-p\r\n"


def test_design_example_in_one_piece():
    sub, rest = parse_all(DESIGN_EXAMPLE)
    assert sub == Subscribe("Terry-Mao", 30, "", "1.0")
    assert sub.new_form
    assert rest == b""
    assert command(b"sub", b"Terry-Mao", b"30", b"", b"1.0") == DESIGN_EXAMPLE


def test_three_arguments_means_old_form():
    sub, _ = parse_all(command(b"sub", b"k", b"60"))
    assert sub == Subscribe("k", 60)
    assert not sub.new_form


def test_token_and_empty_version_mean_old_form():
    sub, _ = parse_all(command(b"sub", b"k", b"30", b"tok", b""))
    assert sub == Subscribe("k", 30, "tok", "")
    assert not sub.new_form


def test_split_byte_by_byte():
    parser = SubscribeParser()
    results = [parser.feed(DESIGN_EXAMPLE[i:i + 1]) for i in range(len(DESIGN_EXAMPLE))]
    assert results[:-1] == [None] * (len(DESIGN_EXAMPLE) - 1)
    assert results[-1] == Subscribe("Terry-Mao", 30, "", "1.0")


@pytest.mark.parametrize("cut", range(1, len(DESIGN_EXAMPLE)))
def test_split_in_two_anywhere(cut):
    parser = SubscribeParser()
    assert parser.feed(DESIGN_EXAMPLE[:cut]) is None
    assert parser.feed(DESIGN_EXAMPLE[cut:]) == Subscribe("Terry-Mao", 30, "", "1.0")


def test_merged_with_heartbeats_keeps_the_rest():
    sub, rest = parse_all(DESIGN_EXAMPLE + b"hh")
    assert sub is not None
    assert rest == b"hh"
    assert count_heartbeats(rest) == 2


def test_feed_after_completion_is_a_bug():
    parser = SubscribeParser()
    parser.feed(DESIGN_EXAMPLE)
    with pytest.raises(RuntimeError):
        parser.feed(b"h")


def test_truncated_command_waits():
    parser = SubscribeParser()
    assert parser.feed(DESIGN_EXAMPLE[:-5]) is None
    assert parser.remainder == b""


def test_binary_safe_argument_with_crlf_inside():
    sub, _ = parse_all(command(b"sub", b"k", b"30", b"a\r\nb"))
    assert sub.token == "a\r\nb"  # length-prefixed: a CRLF inside an argument is data


@pytest.mark.parametrize("data, why", [
    (b"GET / HTTP/1.1\r\n", "not a command"),
    (b"*0\r\n", "argc 0"),
    (b"*6\r\n", "argc above 5"),
    (b"*-1\r\n", "negative argc"),
    (b"*x\r\n", "argc not a number"),
    (b"*\r\n", "argc missing"),
    (b"*3\n", "no CR"),
    (b"*3\r\nsub\r\n", "argument without $ header"),
    (b"*3\r\n$3\r\nsubX\r\n", "length does not match"),
    (b"*3\r\n$4\r\nsub\r\n$3", "length longer than the data"),
    (b"*1\r\n$4097\r\n", "argument over max_arg_bytes, refused before its bytes arrive"),
    (b"*1\r\n$99999999999\r\n", "length with too many digits"),
    (b"*" + b"1" * 20, "header line that never ends"),
])
def test_malformed_commands(data, why):
    with pytest.raises(ProtocolError) as info:
        parse_all(data)
    assert info.value.reply == REPLY_PARAM, why


def test_oversized_argument_is_refused_before_buffering_it():
    parser = SubscribeParser()
    with pytest.raises(ProtocolError):
        parser.feed(b"*3\r\n$3\r\nsub\r\n$5000\r\n")


def test_header_line_bound():
    parser = SubscribeParser()
    assert parser.feed(b"*" + b"0" * (MAX_HEADER_LINE - 2)) is None
    with pytest.raises(ProtocolError):
        parser.feed(b"0")


@pytest.mark.parametrize("args, why", [
    ([b"pub", b"k", b"30"], "wrong command"),
    ([b"SUB", b"k", b"30"], "command is case sensitive"),
    ([b"sub"], "no key"),
    ([b"sub", b"k"], "no heartbeat"),
    ([b"sub", b"", b"30"], "empty key"),
    ([b"sub", b"k" * 129, b"30"], "key over 128 bytes"),
    ([b"sub", b"\xff\xfe", b"30"], "key not UTF-8"),
    ([b"sub", b"a\nb", b"30"], "key with a control character"),
    ([b"sub", b"k", b"29"], "heartbeat below the minimum"),
    ([b"sub", b"k", b"3601"], "heartbeat above the maximum"),
    ([b"sub", b"k", b"abc"], "heartbeat not a number"),
    ([b"sub", b"k", b"-30"], "negative heartbeat"),
    ([b"sub", b"k", b"+30"], "signed heartbeat"),
    ([b"sub", b"k", b" 30"], "heartbeat with a space"),
    ([b"sub", b"k", b""], "empty heartbeat"),
    ([b"sub", b"k", b"30", b"\xff"], "token not UTF-8"),
])
def test_bad_subscribe_commands(args, why):
    with pytest.raises(ProtocolError) as info:
        parse_all(command(*args))
    assert info.value.reply == REPLY_PARAM, why


def test_key_of_exactly_max_bytes_non_ascii():
    key = "é" * 64  # 128 bytes
    sub, _ = parse_all(command(b"sub", key.encode(), b"30"))
    assert sub.key == key
    with pytest.raises(ProtocolError):
        parse_all(command(b"sub", ("é" * 64 + "x").encode(), b"30"))


def test_configured_limits():
    limits = SubscribeLimits(max_arg_bytes=16, max_key_bytes=4, min_heartbeat=1, max_heartbeat=10)
    assert parse_all(command(b"sub", b"abcd", b"1"), limits)[0] == Subscribe("abcd", 1)
    for args in ([b"sub", b"abcde", b"1"], [b"sub", b"k", b"11"], [b"sub", b"k", b"1", b"t" * 17]):
        with pytest.raises(ProtocolError):
            parse_all(command(*args), limits)


def test_validate_subscribe_for_websocket_params():
    assert validate_subscribe(b"k", b"30", b"", b"2") == Subscribe("k", 30, "", "2")
    with pytest.raises(ProtocolError):
        validate_subscribe(b"", b"30")


def test_parse_command_directly():
    assert parse_command([b"sub", b"k", b"30", b"t", b"v"]) == Subscribe("k", 30, "t", "v")
    with pytest.raises(ProtocolError):
        parse_command([])


def test_count_heartbeats():
    assert count_heartbeats(b"") == 0
    assert count_heartbeats(b"hhh") == 3
    for data in (b"x", b"hx", b"h\r\n", b"H"):
        with pytest.raises(ProtocolError) as info:
            count_heartbeats(data)
        assert info.value.reply == b""  # closed without a reply
