"""The public API over real sockets: /server/get, /msg/get, /time/get in every form, JSONP, bad input."""
from __future__ import annotations

import json
import logging
import time

import pytest

from tests.web.conftest import WebEnv, envelope
from tests.web.fakes import node_info

JSON = "application/json;charset=utf-8"
JSONP = "application/javascript;charset=utf-8"

SERVER_ROUTES = [  # path, key param, proto param, callback param
    ("/server/get", "key", "proto", "callback"),
    ("/1/server/get", "k", "p", "cb"),
    ("/2/server/get", "k", "p", "cb"),
]
MSG_ROUTES = [("/msg/get", "key", "mid", "callback"), ("/1/msg/get", "k", "m", "cb")]


# --- /server/get -------------------------------------------------------------------------------------------

async def test_legacy_server_get_is_byte_exact(env: WebEnv) -> None:
    key = env.key_on("node1")
    response = await env.public.get("/server/get", params={"key": key, "proto": "1"})
    assert response.status_code == 200
    assert response.headers["content-type"] == JSON
    assert response.content == b'{"ret":0,"msg":"ok","data":{"server":"10.0.0.1:6968"}}'
    response = await env.public.get("/server/get", params={"key": key, "proto": "2"})
    assert response.content == b'{"ret":0,"msg":"ok","data":{"server":"10.0.0.1:6969"}}'


async def test_v1_server_get_gives_first_address_of_the_keys_node(env: WebEnv) -> None:
    key = env.key_on("node2")
    assert await env.get("/1/server/get", k=key, p="1") == {"ret": 0, "msg": "ok", "data": {"server": "10.0.0.2:6968"}}
    assert (await env.get("/1/server/get", k=key, p="2"))["data"] == {"server": "10.0.0.2:6969"}


async def test_v2_server_get_lists_every_address(env: WebEnv) -> None:
    key = env.key_on("node2")
    response = await env.public.get("/2/server/get", params={"k": key, "p": "1"})
    assert response.content == b'{"ret":0,"msg":"ok","data":{"server":["10.0.0.2:6968","10.0.0.22:6968"]}}'
    key = env.key_on("node1")
    assert (await env.get("/2/server/get", k=key, p="2"))["data"] == {"server": ["10.0.0.1:6969", "10.0.0.11:6969"]}


@pytest.mark.parametrize("path,key,proto,cb", SERVER_ROUTES)
async def test_server_get_jsonp(env: WebEnv, path: str, key: str, proto: str, cb: str) -> None:
    response = await env.public.get(path, params={key: env.key_on("node1"), proto: "1", cb: "jQuery19_1.done$"})
    assert response.headers["content-type"] == JSONP
    text = response.text
    assert text.startswith("jQuery19_1.done$({") and text.endswith("})")
    assert json.loads(text[len("jQuery19_1.done$("):-1])["ret"] == 0


async def test_the_other_generations_callback_name_is_ignored(env: WebEnv) -> None:
    response = await env.public.get("/1/server/get", params={"k": "a", "p": "1", "callback": "cb"})
    assert envelope(response)["ret"] == 0


@pytest.mark.parametrize("name", ["alert(1)", "1abc", "a" * 65, "a-b", "<script>", "cb;x", "é"])
@pytest.mark.parametrize("path,cb", [("/server/get", "callback"), ("/1/server/get", "cb"), ("/1/time/get", "cb"),
                                     ("/msg/get", "callback"), ("/1/msg/get", "cb")])
async def test_invalid_callback_is_a_param_error_in_plain_json(env: WebEnv, path: str, cb: str, name: str) -> None:
    response = await env.public.get(path, params={"key": "a", "k": "a", "proto": "1", "p": "1", "mid": "0",
                                                  "m": "0", cb: name})
    assert response.content == b'{"ret":65534,"msg":"param error"}'
    assert response.headers["content-type"] == JSON


async def test_longest_allowed_callback_name(env: WebEnv) -> None:
    name = "a" * 64
    response = await env.public.get("/1/time/get", params={"cb": name})
    assert response.text.startswith(name + "(")


@pytest.mark.parametrize("path,key,proto,cb", SERVER_ROUTES)
@pytest.mark.parametrize("params", [
    {},                                       # nothing
    {"proto": "1"},                           # no key
    {"key": "", "proto": "1"},                # empty key
    {"key": "x" * 129, "proto": "1"},         # key too long
    {"key": "é" * 65, "proto": "1"},          # 130 UTF-8 bytes
    {"key": "a"},                             # no proto
    {"key": "a", "proto": "3"},
    {"key": "a", "proto": "0"},
    {"key": "a", "proto": "01"},
    {"key": "a", "proto": "ws"},
    {"key": "a", "proto": " 1"},
])
async def test_server_get_bad_params(env: WebEnv, path: str, key: str, proto: str, cb: str,
                                     params: dict[str, str]) -> None:
    names = {"key": key, "proto": proto}
    response = await env.public.get(path, params={names[name]: value for name, value in params.items()})
    assert response.status_code == 200
    assert envelope(response) == {"ret": 65534, "msg": "param error"}
    await env.assert_alive()


async def test_key_of_128_bytes_is_accepted(env: WebEnv) -> None:
    assert (await env.get("/1/server/get", k="é" * 64, p="2"))["ret"] == 0


@pytest.mark.parametrize("path,key,proto,cb", SERVER_ROUTES)
async def test_no_node_is_1001(env: WebEnv, path: str, key: str, proto: str, cb: str) -> None:
    await env.view.update([])
    assert await env.get(path, **{key: "a", proto: "1"}) == {"ret": 1001, "msg": "no node"}
    await env.assert_alive()


async def test_node_without_an_address_for_the_proto_is_1001(env: WebEnv) -> None:
    await env.view.update([node_info("node1", tcp=["10.0.0.1:6969"], ws=[])])
    assert (await env.get("/1/server/get", k="a", p="1"))["ret"] == 1001
    assert (await env.get("/1/server/get", k="a", p="2"))["data"] == {"server": "10.0.0.1:6969"}


async def test_invalid_utf8_in_the_query_is_a_param_error(env: WebEnv) -> None:
    response = await env.public.get("/1/server/get?k=%ff%fe&p=1")
    assert envelope(response)["ret"] == 65534


# --- /msg/get ----------------------------------------------------------------------------------------------

async def test_legacy_msg_get_is_byte_exact(env: WebEnv) -> None:
    env.message.stored["u1"] = [(5, b'{"a":1}'), (7, b'"hi"')]
    response = await env.public.get("/msg/get", params={"key": "u1", "mid": "0", "pmid": "123"})
    assert response.headers["content-type"] == JSON
    assert response.content == (
        b'{"ret":0,"msg":"ok","data":{"msgs":['
        b'"{\\"msg\\":\\"{\\\\\\"a\\\\\\":1}\\",\\"mid\\":5,\\"gid\\":0}",'
        b'"{\\"msg\\":\\"\\\\\\"hi\\\\\\"\\",\\"mid\\":7,\\"gid\\":0}"'
        b'],"pmsgs":[]}}')
    inner = [json.loads(item) for item in response.json()["data"]["msgs"]]
    assert inner == [{"msg": '{"a":1}', "mid": 5, "gid": 0}, {"msg": '"hi"', "mid": 7, "gid": 0}]


async def test_v1_msg_get_inserts_raw_json_verbatim(env: WebEnv) -> None:
    env.message.stored["u1"] = [(5, b'{"a": [1, 2.50]}'), (7, b'"hi"'), (9, "{\"t\":\"中文\"}".encode())]
    response = await env.public.get("/1/msg/get", params={"k": "u1", "m": "5"})
    assert response.content == ('{"ret":0,"msg":"ok","data":{"msgs":[{"msg":"hi","mid":7,"gid":0},'
                                '{"msg":{"t":"中文"},"mid":9,"gid":0}]}}').encode()
    response = await env.public.get("/1/msg/get", params={"k": "u1", "m": "0"})
    assert b'{"msg":{"a": [1, 2.50]},"mid":5,"gid":0}' in response.content


@pytest.mark.parametrize("path,key,mid,cb", MSG_ROUTES)
async def test_msg_get_with_nothing_new_has_no_data(env: WebEnv, path: str, key: str, mid: str, cb: str) -> None:
    env.message.stored["u1"] = [(5, b"1")]
    response = await env.public.get(path, params={key: "u1", mid: "5"})
    assert response.content == b'{"ret":0,"msg":"ok"}'
    response = await env.public.get(path, params={key: "nobody", mid: "0"})
    assert response.content == b'{"ret":0,"msg":"ok"}'


@pytest.mark.parametrize("path,key,mid,cb", MSG_ROUTES)
async def test_msg_get_reports_trimmed(env: WebEnv, path: str, key: str, mid: str, cb: str) -> None:
    env.message.trimmed.add("u1")
    data = (await env.get(path, **{key: "u1", mid: "0"}))["data"]
    assert data["msgs"] == [] and data["trimmed"] is True
    env.message.stored["u1"] = [(5, b"1")]
    data = (await env.get(path, **{key: "u1", mid: "0"}))["data"]
    assert len(data["msgs"]) == 1 and data["trimmed"] is True


@pytest.mark.parametrize("path,key,mid,cb", MSG_ROUTES)
async def test_msg_get_jsonp(env: WebEnv, path: str, key: str, mid: str, cb: str) -> None:
    env.message.stored["u1"] = [(5, '{"s":"a\u2028b"}'.encode())]
    response = await env.public.get(path, params={key: "u1", mid: "0", cb: "f"})
    assert response.headers["content-type"] == JSONP
    assert response.text.startswith("f({") and response.text.endswith("})")
    assert "\u2028" not in response.text  # a JavaScript line terminator must not appear raw in JSONP


@pytest.mark.parametrize("path,key,mid,cb", MSG_ROUTES)
@pytest.mark.parametrize("params", [
    {"mid": "0"}, {"key": "", "mid": "0"}, {"key": "x" * 129, "mid": "0"},
    {"key": "u1"}, {"key": "u1", "mid": ""}, {"key": "u1", "mid": "-1"}, {"key": "u1", "mid": "+1"},
    {"key": "u1", "mid": "1.5"}, {"key": "u1", "mid": "abc"}, {"key": "u1", "mid": " 1"},
    {"key": "u1", "mid": "1_000"}, {"key": "u1", "mid": "9223372036854775808"}, {"key": "u1", "mid": "١"},
])
async def test_msg_get_bad_params(env: WebEnv, path: str, key: str, mid: str, cb: str,
                                  params: dict[str, str]) -> None:
    names = {"key": key, "mid": mid}
    response = await env.public.get(path, params={names[name]: value for name, value in params.items()})
    assert envelope(response) == {"ret": 65534, "msg": "param error"}
    await env.assert_alive()


async def test_largest_mid_is_accepted(env: WebEnv) -> None:
    assert await env.get("/1/msg/get", k="u1", m=str(2 ** 63 - 1)) == {"ret": 0, "msg": "ok"}


@pytest.mark.parametrize("path,key,mid,cb", MSG_ROUTES)
async def test_message_node_unreachable_is_65535(env: WebEnv, path: str, key: str, mid: str, cb: str) -> None:
    env.message.unreachable = True
    assert await env.get(path, **{key: "u1", mid: "0"}) == {"ret": 65535, "msg": "internal error"}
    env.message.unreachable = False
    await env.assert_alive()


@pytest.mark.parametrize("code,ret", [(65534, 65534), (1001, 1001), (65535, 65535), (42, 65535)])
async def test_message_node_error_reply_keeps_its_code(env: WebEnv, code: int, ret: int) -> None:
    env.message.error = (code, "storage says no")
    assert (await env.get("/1/msg/get", k="u1", m="0"))["ret"] == ret


async def test_stored_message_that_is_not_json_is_sent_as_null(env: WebEnv) -> None:
    env.message.stored["u1"] = [(5, b"\xff\xfe"), (6, b"{broken"), (7, b"1")]
    data = (await env.get("/1/msg/get", k="u1", m="0"))["data"]
    assert data["msgs"] == [{"msg": None, "mid": 5, "gid": 0}, {"msg": None, "mid": 6, "gid": 0},
                            {"msg": 1, "mid": 7, "gid": 0}]


# --- /time/get, errors of the HTTP layer --------------------------------------------------------------------

@pytest.mark.parametrize("path,cb", [("/time/get", "callback"), ("/1/time/get", "cb")])
async def test_time_get(env: WebEnv, path: str, cb: str) -> None:
    before = time.time_ns() // 100
    reply = await env.get(path)
    after = time.time_ns() // 100
    assert reply["ret"] == 0 and before <= reply["data"]["timeid"] <= after
    response = await env.public.get(path, params={cb: "t"})
    assert response.headers["content-type"] == JSONP and response.text.startswith('t({"ret":0,')


async def test_unknown_path_is_a_json_404(env: WebEnv) -> None:
    response = await env.public.get("/nothing/here")
    assert response.status_code == 404
    assert envelope(response) == {"ret": 65534, "msg": "not found"}


async def test_wrong_method_is_a_json_405(env: WebEnv) -> None:
    response = await env.public.post("/1/server/get", content=b"x")
    assert response.status_code == 405
    assert envelope(response) == {"ret": 65534, "msg": "method not allowed"}
    await env.assert_alive()


async def test_admin_paths_are_not_on_the_public_listener(env: WebEnv) -> None:
    response = await env.public.post("/push/private", params={"key": "a", "expire": "0"}, content=b"1")
    assert response.status_code == 404
    assert env.comets["node1"].pushes == [] and env.comets["node2"].pushes == []


async def test_responses_are_not_cacheable(env: WebEnv) -> None:
    response = await env.public.get("/1/time/get")
    assert response.headers["cache-control"] == "no-store"
    assert response.headers["x-content-type-options"] == "nosniff"


async def test_keys_reach_the_message_node_byte_for_byte(env: WebEnv) -> None:
    for key in (" padded ", "ünïcode", "a b"):
        env.message.stored[key] = [(3, b"1")]
        assert (await env.get("/1/msg/get", k=key, m="0"))["data"]["msgs"][0]["mid"] == 3


async def test_keys_with_control_characters_are_refused(env: WebEnv) -> None:
    for key in ("tab\tkey", "a\x01b", "line\nbreak", "del\x7f"):
        env.message.stored[key] = [(3, b"1")]
        assert (await env.get("/1/msg/get", k=key, m="0"))["ret"] == 65534
        assert (await env.get("/1/server/get", k=key, p="2"))["ret"] == 65534


async def test_first_value_of_a_repeated_parameter_wins(env: WebEnv) -> None:
    response = await env.public.get("/1/server/get?k=a&p=1&p=9")
    assert envelope(response)["ret"] == 0


async def test_access_log_line_per_request(env: WebEnv, caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.INFO, logger="web.access"):
        await env.public.get("/1/server/get", params={"k": "a", "p": "9"})
        await env.public.get("/missing")
    lines = [(r.name, r.levelno, r.getMessage()) for r in caplog.records if r.name.startswith("web.access")]
    assert lines[0][:2] == ("web.access.public", logging.INFO)
    assert lines[0][2].startswith("GET /1/server/get 200 ret=65534 ")
    assert lines[1][:2] == ("web.access.public", logging.WARNING)
    assert lines[1][2].startswith("GET /missing 404 ret=65534 ")


async def test_head_and_other_methods_are_405_as_before(env: WebEnv) -> None:
    response = await env.public.head("/1/server/get", params={"k": "a", "p": "1"})
    assert response.status_code == 405 and response.content == b""
    assert int(response.headers["content-length"]) == len(b'{"ret":65534,"msg":"method not allowed"}')
    for method in ("OPTIONS", "PUT", "FOO"):
        response = await env.public.request(method, "/1/time/get")
        assert response.status_code == 405, method
        assert envelope(response) == {"ret": 65534, "msg": "method not allowed"}
    assert (await env.public.request("FOO", "/nothing")).status_code == 405
    assert (await env.public.request("DELETE", "/nothing")).status_code == 404
    await env.assert_alive()


async def test_a_bug_is_a_500_envelope_with_the_traceback_logged(env: WebEnv, caplog: pytest.LogCaptureFixture,
                                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    async def broken(key: str, mid: int) -> None:
        raise RuntimeError("a bug")

    monkeypatch.setattr(env.message, "get_private", broken)
    with caplog.at_level(logging.ERROR, logger="web"):
        response = await env.public.get("/1/msg/get", params={"k": "u1", "m": "0"})
    assert response.status_code == 500
    assert envelope(response) == {"ret": 65535, "msg": "internal error"}
    assert response.headers["cache-control"] == "no-store"
    [record] = [r for r in caplog.records if r.name == "web.app"]
    assert record.exc_info is not None and "a bug" in str(record.exc_info[1])
    monkeypatch.undo()
    await env.assert_alive()


async def test_responses_carry_date_and_length(env: WebEnv) -> None:
    response = await env.public.get("/1/time/get")
    assert response.headers["date"].endswith(" GMT")
    assert int(response.headers["content-length"]) == len(response.content)
