"""web.params: every validator and its limits (pure, no server)."""
from __future__ import annotations

import json

import pytest

from web.params import (Proto, parse_expire, parse_form_key, parse_key, parse_keys, parse_message, parse_mid,
                        parse_multi_body, parse_proto, parse_query, query_text)
from web.ret import ParamError


def test_key_limits() -> None:
    assert parse_key("a", 128) == "a"
    assert parse_key("é" * 64, 128) == "é" * 64
    for bad in ("", "é" * 65, "x" * 129):
        with pytest.raises(ParamError):
            parse_key(bad, 128)


@pytest.mark.parametrize("text,value", [("0", 0), ("42", 42), ("007", 7), (str(2 ** 63 - 1), 2 ** 63 - 1)])
def test_mid(text: str, value: int) -> None:
    assert parse_mid(text) == value


@pytest.mark.parametrize("text", ["", "-1", "+1", " 1", "1 ", "1.0", "1e3", "0x10", "1_0", "١", str(2 ** 63),
                                  "1" * 20])
def test_bad_mid(text: str) -> None:
    with pytest.raises(ParamError):
        parse_mid(text)


def test_expire_bounds() -> None:
    assert parse_expire("0", 10) == 0 and parse_expire("10", 10) == 10
    with pytest.raises(ParamError):
        parse_expire("11", 10)


def test_proto() -> None:
    assert parse_proto("1") is Proto.WEBSOCKET and parse_proto("2") is Proto.TCP
    for bad in ("", "0", "3", "01", "tcp"):
        with pytest.raises(ParamError):
            parse_proto(bad)


def test_message_is_stripped_json() -> None:
    assert parse_message(b' \n{"a": 1}\t', 100) == b'{"a": 1}'
    assert parse_message(b'"x"', 3) == b'"x"'


@pytest.mark.parametrize("body", [b"", b" ", b"{", b"NaN", b"-Infinity", b"[1,]", b"\xff", b"'a'",
                                  b"[" * 100000, b'"' + b"x" * 100 + b'"'])
def test_bad_message(body: bytes) -> None:
    with pytest.raises(ParamError):
        parse_message(body, 100 if len(body) < 1000 else 10 ** 6)


def test_keys_are_deduplicated_in_order() -> None:
    assert parse_keys("b,a,b,c,a", 10, 5) == ["b", "a", "c"]


@pytest.mark.parametrize("text", ["", ",", "a,", ",a", "a,,b", "a,xxxxxxxxxxx", "a,b,c,d,e,f"])
def test_bad_keys(text: str) -> None:
    with pytest.raises(ParamError):
        parse_keys(text, 10, 5)


def test_multi_body() -> None:
    body = json.dumps({"m": '{"x": "中"}', "k": "a,b,a", "extra": 1}).encode()
    assert parse_multi_body(body, 100, 10, 5) == ('{"x": "中"}'.encode(), ["a", "b"])


@pytest.mark.parametrize("doc", [[], "s", {"m": 1, "k": "a"}, {"m": "1"}, {"k": "a"}, {"m": "{", "k": "a"},
                                 {"m": "1", "k": 5}])
def test_bad_multi_body(doc: object) -> None:
    with pytest.raises(ParamError):
        parse_multi_body(json.dumps(doc).encode(), 100, 10, 5)


def test_form_key() -> None:
    assert parse_form_key(b"key=a%20b&x=1", 10) == "a b"
    assert parse_form_key("key=中".encode(), 10) == "中"
    assert parse_form_key(b"key=a&key=b", 10) == "b"
    for bad in (b"", b"key=", b"k=a", b"key=%ff", b"\xff", b"key=" + b"x" * 11):
        with pytest.raises(ParamError):
            parse_form_key(bad, 10)


def test_query_keeps_the_first_value_and_decodes_like_tornado() -> None:
    assert parse_query("") == {}
    assert parse_query("k=a&p=1&p=9&&m") == {"k": "a", "p": "1", "m": ""}
    assert parse_query("k=a+b%2Bc&%6B2=x") == {"k": "a b+c", "k2": "x"}
    assert parse_query("k=a;p=1") == {"k": "a;p=1"}  # "&" separates, ";" does not


def test_query_text_is_the_utf8_the_client_sent() -> None:
    args = parse_query("k=%C3%A9&raw=\xc3\xa9&bad=%FF")
    assert query_text(args["k"], "k") == "é"
    assert query_text(args["raw"], "raw") == "é"  # unescaped UTF-8 in the request line (read as latin-1)
    with pytest.raises(ParamError):
        query_text(args["bad"], "bad")
