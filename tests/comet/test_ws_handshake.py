"""comet.ws_handshake: the upgrade request head, its checks and the responses (pure, no sockets)."""
import pytest

from comet.ws_handshake import (
    MAX_REQUEST_HEAD, HandshakeError, RequestHeadParser, UpgradeRequest, accept_value, parse_upgrade,
)

HEADERS = ("Host: comet.example.com:6968\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
           "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n")


def head(target="/sub?key=alice&heartbeat=30", method="GET", headers=HEADERS):
    return f"{method} {target} HTTP/1.1\r\n{headers}".rstrip("\r\n").encode("latin-1")


def test_accept_value_of_the_rfc_example():
    assert accept_value("dGhlIHNhbXBsZSBub25jZQ==") == "s3pPLMBiTxaQ9kYGzzhZRbK+xOo="


def test_valid_request_and_its_101():
    request = parse_upgrade(head("/sub?key=alice&heartbeat=30&ver=1.0&token="))
    assert request.param("key") == b"alice" and request.param("heartbeat") == b"30"
    assert request.param("ver") == b"1.0" and request.param("token") == b"" and request.param("nope") == b""
    assert request.response() == (b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n"
                                  b"Connection: Upgrade\r\nSec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n\r\n")


def test_query_values_are_raw_bytes_first_one_wins():
    request = parse_upgrade(head("/sub?key=%FF%e6%8e%a8&key=second&heartbeat=30"))
    assert request.param("key") == b"\xff\xe6\x8e\xa8"
    assert isinstance(request, UpgradeRequest)


def test_header_names_and_tokens_are_case_insensitive():
    headers = ("host: x\r\nUPGRADE: WebSocket\r\nconnection: keep-alive, Upgrade\r\n"
               "sec-websocket-key: abc\r\nSEC-WEBSOCKET-VERSION: 8\r\nOrigin: https://app.example.com\r\n")
    assert parse_upgrade(head(headers=headers)).accept == accept_value("abc")


@pytest.mark.parametrize("data, status", [
    (head("/nowhere"), 404),
    (head("/sub/"), 404),
    (head(method="POST"), 405),
    (b"NOT HTTP", 400),
    (b"GET /sub HTTP/2.0", 400),
    (head(headers=HEADERS.replace("websocket", "h2c")), 400),
    (head(headers=HEADERS.replace("Connection: Upgrade", "Connection: keep-alive")), 400),
    (head(headers=HEADERS.replace("Host: comet.example.com:6968\r\n", "")), 400),
    (head(headers=HEADERS.replace("Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n", "")), 400),
    (head(headers=HEADERS + "Bad Header: x\r\n"), 400),
    (head(headers=HEADERS + "no colon\r\n"), 400),
    (head(headers=HEADERS.replace("Version: 13", "Version: 12")), 426),
])
def test_refused_requests(data, status):
    with pytest.raises(HandshakeError) as info:
        parse_upgrade(data)
    assert info.value.status == status
    response = info.value.response()
    assert response.startswith(b"HTTP/1.1 %d " % status)
    assert b"\r\nConnection: close\r\n" in response
    if status == 426:
        assert b"\r\nSec-WebSocket-Version: 7, 8, 13\r\n" in response
    if status == 405:
        assert b"\r\nAllow: GET\r\n" in response


def test_head_parser_split_byte_by_byte_keeps_the_rest():
    data = head() + b"\r\n\r\n" + b"\x81\x81frame"
    parser = RequestHeadParser()
    results = [parser.feed(data[i:i + 1]) for i in range(len(data))]
    done = [result for result in results if result is not None]
    assert done[0] == (head(), b"")  # complete as soon as the blank line arrived
    assert results.index(done[0]) == len(head()) + 3
    parser = RequestHeadParser()
    assert parser.feed(data) == (head(), b"\x81\x81frame")


def test_head_parser_accepts_bare_lf():
    assert RequestHeadParser().feed(b"GET /sub HTTP/1.1\nHost: x\n\nrest") == (b"GET /sub HTTP/1.1\nHost: x", b"rest")


def test_head_parser_bounds_the_head():
    parser = RequestHeadParser()
    assert parser.feed(b"GET /sub?token=" + b"t" * (MAX_REQUEST_HEAD - 100)) is None
    with pytest.raises(HandshakeError) as info:
        parser.feed(b"t" * 200)
    assert info.value.status == 431
