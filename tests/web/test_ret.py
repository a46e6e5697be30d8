"""web.ret: envelopes, JSONP, callback names, error classes (pure, no server)."""
from __future__ import annotations

import json

import pytest

from web.ret import (JSON_CONTENT_TYPE, JSONP_CONTENT_TYPE, InternalError, NoNodeError, ParamError, RawJSON, Ret,
                     RetError, check_callback, dumps, error_for_code, render)


def test_ok_envelope_without_data() -> None:
    assert render(Ret.OK) == (b'{"ret":0,"msg":"ok"}', JSON_CONTENT_TYPE)


def test_ok_envelope_with_data() -> None:
    body, content_type = render(Ret.OK, {"server": "h:1"})
    assert body == b'{"ret":0,"msg":"ok","data":{"server":"h:1"}}'
    assert content_type == "application/json;charset=utf-8"


@pytest.mark.parametrize("ret,text", [(Ret.NO_NODE, "no node"), (Ret.PARAM, "param error"),
                                      (Ret.INTERNAL, "internal error")])
def test_error_envelopes(ret: Ret, text: str) -> None:
    assert json.loads(render(ret)[0]) == {"ret": int(ret), "msg": text}


def test_codes_are_gopush_clusters() -> None:
    assert [int(r) for r in Ret] == [0, 1001, 65534, 65535]


def test_msg_override() -> None:
    assert render(Ret.PARAM, msg="not found")[0] == b'{"ret":65534,"msg":"not found"}'


def test_jsonp() -> None:
    body, content_type = render(Ret.OK, {"a": 1}, "cb")
    assert body == b'cb({"ret":0,"msg":"ok","data":{"a":1}})'
    assert content_type == JSONP_CONTENT_TYPE == "application/javascript;charset=utf-8"


def test_jsonp_escapes_javascript_line_terminators_but_json_keeps_them_verbatim() -> None:
    data = {"s": "a\u2028b", "raw": RawJSON('"c\u2029d"')}
    assert "\u2028" in render(Ret.OK, data)[0].decode()
    jsonp = render(Ret.OK, data, "f")[0].decode()
    assert "\u2028" not in jsonp and "\u2029" not in jsonp
    assert json.loads(jsonp[2:-1])["data"] == {"s": "a\u2028b", "raw": "c\u2029d"}


def test_raw_json_is_inserted_verbatim() -> None:
    assert dumps({"msg": RawJSON('{"a": 1.50}'), "mid": 3}) == '{"msg":{"a": 1.50},"mid":3}'


def test_dumps_keeps_utf8_and_escapes_quotes() -> None:
    assert dumps(["中", 'a"b', None, True, 1.5]) == '["中","a\\"b",null,true,1.5]'


@pytest.mark.parametrize("name", ["cb", "_", "$", "jQuery1910_1234", "a.b.c", "$.x$1", "A" * 64])
def test_valid_callbacks(name: str) -> None:
    assert check_callback(name) == name


def test_empty_callback_means_plain_json() -> None:
    assert check_callback("") is None


@pytest.mark.parametrize("name", ["1a", ".a", "a b", "a(1)", "a-b", "a;b", "a" * 65, "é", "a\n", "<x>", "a/b",
                                  "a\u0660"])
def test_invalid_callbacks(name: str) -> None:
    with pytest.raises(ParamError):
        check_callback(name)


def test_error_classes_carry_their_ret() -> None:
    assert ParamError("x").ret is Ret.PARAM
    assert NoNodeError("x").ret is Ret.NO_NODE
    assert InternalError("x").ret is Ret.INTERNAL
    assert isinstance(ParamError("x"), RetError) and ParamError("why").reason == "why"


@pytest.mark.parametrize("code,cls", [(1001, NoNodeError), (65534, ParamError), (65535, InternalError),
                                      (0, InternalError), (12, InternalError)])
def test_error_for_code(code: int, cls: type[RetError]) -> None:
    assert type(error_for_code(code, "r")) is cls
