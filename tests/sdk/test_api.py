"""Pure parsing of what the comet and the web node send: raw message bytes kept exactly, errors by ret code."""
from __future__ import annotations

import json

import pytest

from comet.message_codec import EncodedMessage
from comet.subscriber_api import (
    ApiError, AuthError, BadParameterError, Message, NoNodeError, ServerError, parse_envelope, parse_fetch,
    parse_message, parse_server,
)
from web.ret import RawJSON, Ret, render

PUSHED = [
    b'{"title":"hi"}',
    b'{ "spaced" : [1, 2.50, {"x": null}] ,"e":"\\u00e9 \xc3\xa9 \\"q\\""}',
    b'"just a string"',
    b'12345678901234567890',
    b'[]',
    b'null',
]


@pytest.mark.parametrize("raw", PUSHED)
def test_live_frame_keeps_the_pushed_bytes(raw: bytes) -> None:
    message = parse_message("alice", EncodedMessage(raw, 17000000000000001).new_json)
    assert message == Message("alice", 17000000000000001, 0, raw, json.loads(raw), fetched=False)


def test_fetch_reply_keeps_the_pushed_bytes_and_the_trimmed_flag() -> None:
    items = [{"msg": RawJSON(raw.decode()), "mid": mid, "gid": 0} for mid, raw in enumerate(PUSHED, 5)]
    body, _ = render(Ret.OK, {"msgs": items, "trimmed": True})
    page = parse_fetch("bob", 200, body)
    assert page.trimmed
    assert page.messages == [Message("bob", mid, 0, raw, json.loads(raw), fetched=True)
                             for mid, raw in enumerate(PUSHED, 5)]
    assert parse_fetch("bob", 200, render(Ret.OK)[0]).messages == []          # nothing new: no data
    assert not parse_fetch("bob", 200, render(Ret.OK, {"msgs": []})[0]).trimmed


@pytest.mark.parametrize("frame", [
    b'{"msg":1,"gid":0}', b'{"msg":1,"mid":-1,"gid":0}', b'{"msg":1,"mid":true,"gid":0}', b'{"mid":3,"gid":0}',
    b'{"msg":1,"mid":3,"gid":0} x', b'{"msg":1,"mid":3,"gid":0', b'[1]', b'\xff',
])
def test_malformed_frames(frame: bytes) -> None:
    with pytest.raises(ValueError):
        parse_message("k", frame)


@pytest.mark.parametrize("status, body, error, ret", [
    (200, render(Ret.NO_NODE)[0], NoNodeError, 1001),
    (200, render(Ret.PARAM)[0], BadParameterError, 65534),
    (200, render(Ret.INTERNAL)[0], ServerError, 65535),
    (200, b'{"ret":4242,"msg":"new code"}', ApiError, 4242),
    (401, render(Ret.PARAM, msg="unauthorized")[0], AuthError, 65534),
    (400, b"", BadParameterError, 65534),
    (502, b"<html>bad gateway</html>", ServerError, 65535),
    (500, render(Ret.INTERNAL, msg="internal error")[0], ServerError, 65535),
    (200, b'{"ret":"0"}', ServerError, 65535),
    (200, b'{"ret":0,"data":[1]}', ServerError, 65535),
])
def test_errors_by_ret_and_status(status: int, body: bytes, error: type[ApiError], ret: int) -> None:
    for parse in (lambda: parse_envelope(status, body), lambda: parse_fetch("k", status, body)):
        with pytest.raises(error) as caught:
            parse()
        assert type(caught.value) is error and caught.value.ret == ret and caught.value.status == status


def test_envelope_data_and_server_address() -> None:
    assert parse_envelope(200, render(Ret.OK)[0]) == {}
    assert parse_server(parse_envelope(200, render(Ret.OK, {"server": "10.0.0.1:6969"})[0])) == ("10.0.0.1", 6969)
    assert parse_server({"server": "[::1]:6968"}) == ("::1", 6968)
    for data in ({}, {"server": ["a:1"]}, {"server": "nohost"}):
        with pytest.raises(ServerError):
            parse_server(data)
