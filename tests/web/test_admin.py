"""The admin API over real sockets: push, multi-push, delete, bearer token, body limits."""
from __future__ import annotations

import json
from typing import Any, AsyncIterator

import httpx
import pytest

from tests.web.conftest import WebEnv, envelope, start_env, stop_env

PUSH_PATHS = ["/push/private", "/1/admin/push/private", "/admin/push"]
MULTI_PATHS = ["/push/mprivate", "/1/admin/push/mprivate"]
DEL_PATHS = ["/msg/del", "/1/admin/msg/del", "/admin/msg/clean"]


async def post(env: WebEnv, path: str, body: bytes = b"", **params: str) -> Any:
    response = await env.admin.post(path, params=params, content=body)
    assert response.status_code == 200, response.text
    return envelope(response)


def all_pushes(env: WebEnv) -> list[Any]:
    return [push for comet in env.comets.values() for push in comet.pushes + comet.multi_pushes]


# --- /push/private -----------------------------------------------------------------------------------------

@pytest.mark.parametrize("path", PUSH_PATHS)
async def test_push_private_goes_to_the_keys_comet(env: WebEnv, path: str) -> None:
    key = env.key_on("node2")
    env.comets["node2"].online[key] = 3
    response = await env.admin.post(path, params={"key": key, "expire": "600"}, content=b'{"title":"hi"}')
    assert response.content == b'{"ret":0,"msg":"ok","data":{"mid":1001,"online":3}}'
    assert env.comets["node2"].pushes == [(key, b'{"title":"hi"}', 600)]
    assert env.comets["node1"].pushes == []


async def test_push_private_keeps_the_message_bytes_and_strips_surrounding_whitespace(env: WebEnv) -> None:
    key = env.key_on("node1")
    body = '\n  {"b": [1, 2.50], "t": "中文"}\r\n'.encode()
    assert (await post(env, "/push/private", body, key=key, expire="0"))["ret"] == 0
    assert env.comets["node1"].pushes == [(key, '{"b": [1, 2.50], "t": "中文"}'.encode(), 0)]


@pytest.mark.parametrize("path", PUSH_PATHS)
@pytest.mark.parametrize("params,body", [
    ({"expire": "60"}, b"1"),                                  # no key
    ({"key": "", "expire": "60"}, b"1"),
    ({"key": "x" * 129, "expire": "60"}, b"1"),
    ({"key": "a"}, b"1"),                                      # no expire
    ({"key": "a", "expire": "-1"}, b"1"),
    ({"key": "a", "expire": "1h"}, b"1"),
    ({"key": "a", "expire": "2592001"}, b"1"),                 # above max_expire
    ({"key": "a", "expire": "60"}, b""),                       # empty body
    ({"key": "a", "expire": "60"}, b"  \r\n"),
    ({"key": "a", "expire": "60"}, b'{"a":'),                  # invalid JSON
    ({"key": "a", "expire": "60"}, b"hello"),
    ({"key": "a", "expire": "60"}, b"NaN"),
    ({"key": "a", "expire": "60"}, b'{"a":1} {"b":2}'),
    ({"key": "a", "expire": "60"}, b'"\xff"'),                 # not UTF-8
    ({"key": "a", "expire": "60"}, b"[" * 1000 + b"]" * 1000),  # too deep to parse
    ({"key": "a", "expire": "60"}, b'"' + b"x" * 1023 + b'"'),  # 1025 bytes > max_body_bytes (1024)
])
async def test_push_private_bad_input_is_65534_and_pushes_nothing(env: WebEnv, path: str, params: dict[str, str],
                                                                  body: bytes) -> None:
    assert await post(env, path, body, **params) == {"ret": 65534, "msg": "param error"}
    assert all_pushes(env) == []
    await env.assert_alive()


async def test_push_private_of_max_body_bytes_is_accepted(env: WebEnv) -> None:
    body = b'"' + b"x" * 1022 + b'"'
    assert (await post(env, "/push/private", body, key="a", expire="2592000"))["ret"] == 0


async def test_body_above_the_hard_cap_is_refused_unread(env: WebEnv) -> None:
    body = b'"' + b"x" * 4096 + b'"'  # hard cap = 2 x max_body_bytes = 2048
    try:
        response = await env.admin.post("/push/private", params={"key": "a", "expire": "0"}, content=body)
    except httpx.TransportError:
        pass  # the server may close before the client finished sending
    else:
        assert response.status_code == 400
    assert all_pushes(env) == []
    await env.assert_alive()
    assert (await post(env, "/push/private", b"1", key="a", expire="0"))["ret"] == 0


async def test_push_private_no_node_is_1001(env: WebEnv) -> None:
    await env.view.update([])
    assert await post(env, "/push/private", b"1", key="a", expire="0") == {"ret": 1001, "msg": "no node"}


async def test_push_private_unreachable_comet_is_65535(env: WebEnv) -> None:
    key = env.key_on("node1")
    env.comets["node1"].unreachable = True
    assert await post(env, "/push/private", b"1", key=key, expire="0") == {"ret": 65535, "msg": "internal error"}
    other = env.key_on("node2")
    assert (await post(env, "/push/private", b"1", key=other, expire="0"))["ret"] == 0
    await env.assert_alive()


@pytest.mark.parametrize("code,ret", [(1001, 1001), (65534, 65534), (65535, 65535), (7, 65535)])
async def test_push_private_comet_error_reply_keeps_its_code(env: WebEnv, code: int, ret: int) -> None:
    key = env.key_on("node1")
    env.comets["node1"].error = (code, "refused")
    assert (await post(env, "/push/private", b"1", key=key, expire="0"))["ret"] == ret


@pytest.mark.parametrize("path", PUSH_PATHS + MULTI_PATHS + DEL_PATHS)
async def test_admin_endpoints_take_post_only(env: WebEnv, path: str) -> None:
    response = await env.admin.get(path, params={"key": "a", "expire": "0"})
    assert response.status_code == 405
    assert envelope(response)["ret"] == 65534


async def test_public_paths_are_not_on_the_admin_listener(env: WebEnv) -> None:
    response = await env.admin.get("/1/time/get")
    assert response.status_code == 404 and envelope(response)["msg"] == "not found"


# --- /push/mprivate ----------------------------------------------------------------------------------------

def multi_body(message: str, keys: str) -> bytes:
    return json.dumps({"m": message, "k": keys}).encode()


@pytest.mark.parametrize("path", MULTI_PATHS)
async def test_mprivate_groups_keys_by_node(env: WebEnv, path: str) -> None:
    a1, a2 = env.key_on("node1", "a"), env.key_on("node1", "b")
    b1 = env.key_on("node2", "c")
    body = multi_body('{"x":1}', f"{a1},{b1},{a2}")
    response = await env.admin.post(path, params={"expire": "30"}, content=body)
    assert response.content == b'{"ret":0,"msg":"ok","data":{"fk":[]}}'
    assert env.comets["node1"].multi_pushes == [([a1, a2], b'{"x":1}', 30)]
    assert env.comets["node2"].multi_pushes == [([b1], b'{"x":1}', 30)]


async def test_mprivate_unreachable_node_fails_only_its_keys(env: WebEnv) -> None:
    keys1 = [env.key_on("node1", p) for p in "abc"]
    keys2 = [env.key_on("node2", p) for p in "de"]
    env.comets["node2"].unreachable = True
    order = [keys2[0], keys1[0], keys1[1], keys2[1], keys1[2]]
    reply = await post(env, "/push/mprivate", multi_body("1", ",".join(order)), expire="0")
    assert reply == {"ret": 0, "msg": "ok", "data": {"fk": [keys2[0], keys2[1]]}}
    assert env.comets["node1"].multi_pushes == [(keys1, b"1", 0)]
    await env.assert_alive()


async def test_mprivate_pushes_the_nodes_concurrently(env: WebEnv) -> None:
    a, b = env.key_on("node1"), env.key_on("node2")
    node1, node2 = env.comets["node1"], env.comets["node2"]
    node1.gate, node2.gate = node2.started, node1.started  # each waits until the other has started
    reply = await post(env, "/push/mprivate", multi_body("1", f"{a},{b}"), expire="0")
    assert reply["data"] == {"fk": []}
    assert node1.multi_pushes == [([a], b"1", 0)] and node2.multi_pushes == [([b], b"1", 0)]


async def test_mprivate_reports_keys_the_comet_could_not_push(env: WebEnv) -> None:
    a, b = env.key_on("node1", "a"), env.key_on("node1", "b")
    env.comets["node1"].refuse = {b, "not-asked"}
    reply = await post(env, "/push/mprivate", multi_body("1", f"{a},{b}"), expire="0")
    assert reply["data"] == {"fk": [b]}


async def test_mprivate_comet_error_reply_fails_its_keys(env: WebEnv) -> None:
    a, b = env.key_on("node1"), env.key_on("node2")
    env.comets["node1"].error = (65535, "storage down")
    assert (await post(env, "/push/mprivate", multi_body("1", f"{a},{b}"), expire="0"))["data"] == {"fk": [a]}


async def test_mprivate_with_no_node_fails_every_key(env: WebEnv) -> None:
    await env.view.update([])
    assert (await post(env, "/push/mprivate", multi_body("1", "a,b"), expire="0"))["data"] == {"fk": ["a", "b"]}


async def test_mprivate_deduplicates_keys(env: WebEnv) -> None:
    a = env.key_on("node1")
    await post(env, "/push/mprivate", multi_body("1", f"{a},{a},{a}"), expire="0")
    assert env.comets["node1"].multi_pushes == [([a], b"1", 0)]


@pytest.mark.parametrize("params,body", [
    ({}, multi_body("1", "a")),                                   # no expire
    ({"expire": "x"}, multi_body("1", "a")),
    ({"expire": "0"}, b""),
    ({"expire": "0"}, b"not json"),
    ({"expire": "0"}, b'["m", "k"]'),                             # not an object
    ({"expire": "0"}, b'{"k": "a"}'),                             # no m
    ({"expire": "0"}, b'{"m": "", "k": "a"}'),
    ({"expire": "0"}, b'{"m": {"x": 1}, "k": "a"}'),              # m must be a string
    ({"expire": "0"}, multi_body("{broken", "a")),               # m is not JSON
    ({"expire": "0"}, b'{"m": "1"}'),                             # no k
    ({"expire": "0"}, b'{"m": "1", "k": ["a"]}'),
    ({"expire": "0"}, multi_body("1", "")),
    ({"expire": "0"}, multi_body("1", "a,,b")),                   # empty key
    ({"expire": "0"}, multi_body("1", "a,")),
    ({"expire": "0"}, multi_body("1", "a," + "x" * 129)),         # key too long
    ({"expire": "0"}, multi_body("1", "a,b,c,d,e,f")),            # 6 keys > max_keys_per_push (5)
    ({"expire": "0"}, multi_body("x" * 1100, "a")),               # body above max_body_bytes
])
async def test_mprivate_bad_input_is_65534(env: WebEnv, params: dict[str, str], body: bytes) -> None:
    assert await post(env, "/push/mprivate", body, **params) == {"ret": 65534, "msg": "param error"}
    assert all_pushes(env) == []
    await env.assert_alive()


# --- /msg/del ----------------------------------------------------------------------------------------------

@pytest.mark.parametrize("path", DEL_PATHS)
async def test_msg_del_deletes_then_closes_the_channel(env: WebEnv, path: str) -> None:
    key = env.key_on("node2")
    env.message.stored[key] = [(1, b"1"), (2, b"2")]
    env.comets["node2"].online[key] = 2
    response = await env.admin.post(path, data={"key": key})
    assert response.content == b'{"ret":0,"msg":"ok","data":{"deleted":2,"closed":2}}'
    assert env.message.stored == {} and env.message.deleted == [key]
    assert env.comets["node2"].closed_keys == [key] and env.comets["node1"].closed_keys == []


async def test_msg_del_reads_the_form_whatever_the_content_type(env: WebEnv) -> None:
    key = env.key_on("node1")
    reply = await post(env, "/msg/del", f"key={key}".encode())
    assert reply["data"] == {"deleted": 0, "closed": 0}
    assert env.comets["node1"].closed_keys == [key]


async def test_msg_del_with_the_comet_unreachable_still_deletes(env: WebEnv) -> None:
    key = env.key_on("node1")
    env.message.stored[key] = [(1, b"1")]
    env.comets["node1"].unreachable = True
    reply = await post(env, "/msg/del", f"key={key}".encode())
    assert reply == {"ret": 0, "msg": "ok", "data": {"deleted": 1, "closed": None}}
    assert env.message.stored == {}


async def test_msg_del_with_the_message_node_unreachable_is_65535_and_closes_nothing(env: WebEnv) -> None:
    key = env.key_on("node1")
    env.message.unreachable = True
    assert await post(env, "/msg/del", f"key={key}".encode()) == {"ret": 65535, "msg": "internal error"}
    assert env.comets["node1"].closed_keys == []
    await env.assert_alive()


async def test_msg_del_with_no_node_only_deletes(env: WebEnv) -> None:
    env.message.stored["a"] = [(1, b"1")]
    await env.view.update([])
    assert (await post(env, "/msg/del", b"key=a"))["data"] == {"deleted": 1, "closed": 0}


@pytest.mark.parametrize("body", [b"", b"key=", b"other=a", b"key=" + b"x" * 129, b"key=%ff", b"key=\xff"])
async def test_msg_del_bad_input_is_65534(env: WebEnv, body: bytes) -> None:
    assert await post(env, "/msg/del", body) == {"ret": 65534, "msg": "param error"}
    assert env.message.deleted == []
    await env.assert_alive()


# --- bearer token ------------------------------------------------------------------------------------------

@pytest.fixture
async def guarded() -> AsyncIterator[WebEnv]:
    web = await start_env(admin={"token": "s3cret-token"})
    try:
        yield web
    finally:
        await stop_env(web)


@pytest.mark.parametrize("path", PUSH_PATHS + MULTI_PATHS + DEL_PATHS)
@pytest.mark.parametrize("authorization", [None, "Bearer wrong", "Bearer s3cret-toke", "Bearer s3cret-token2",
                                           "Basic s3cret-token", "s3cret-token", "Bearer", ""])
async def test_token_refused_is_401_and_changes_nothing(guarded: WebEnv, path: str, authorization: str | None) -> None:
    env = guarded
    key = env.key_on("node1")
    env.message.stored[key] = [(1, b"1")]
    headers = {} if authorization is None else {"Authorization": authorization}
    body = multi_body("1", key) if "mprivate" in path else f"key={key}".encode() if "del" in path else b"1"
    response = await env.admin.post(path, params={"key": key, "expire": "0"}, content=body, headers=headers)
    assert response.status_code == 401
    assert envelope(response) == {"ret": 65534, "msg": "unauthorized"}
    assert response.headers["www-authenticate"].startswith("Bearer")
    assert all_pushes(env) == [] and env.message.deleted == [] and env.comets["node1"].closed_keys == []
    await env.assert_alive()


@pytest.mark.parametrize("authorization", ["Bearer s3cret-token", "bearer s3cret-token", "Bearer  s3cret-token"])
async def test_token_accepted(guarded: WebEnv, authorization: str) -> None:
    env = guarded
    response = await env.admin.post("/push/private", params={"key": "a", "expire": "0"}, content=b"1",
                                    headers={"Authorization": authorization})
    assert response.status_code == 200 and envelope(response)["ret"] == 0
    assert len(all_pushes(env)) == 1


async def test_public_api_needs_no_token(guarded: WebEnv) -> None:
    await guarded.assert_alive()
