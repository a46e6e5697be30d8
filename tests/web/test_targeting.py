"""Tags and aliases over real HTTP (fake comets and message node): /push/tags, /push/alias, /key/tags, /key/alias,
/key/info, /alias/get, /tag/keys; every bad input is 65534 with its reason and changes nothing."""
from __future__ import annotations

import copy
import json
from typing import Any, AsyncIterator

import pytest

from tests.web.conftest import WebEnv, envelope, start_env, stop_env

MSG = b'{"title":"hi"}'


async def call(env: WebEnv, method: str, path: str, body: bytes = b"", **params: str) -> Any:
    response = await env.admin.request(method, path, params=params, content=body)
    assert response.status_code == 200, response.text
    return envelope(response)


async def post(env: WebEnv, path: str, body: bytes = b"", **params: str) -> Any:
    return await call(env, "POST", path, body, **params)


async def get(env: WebEnv, path: str, **params: str) -> Any:
    return await call(env, "GET", path, b"", **params)


def tags_body(expr: Any, message: str = MSG.decode()) -> bytes:
    return json.dumps({"m": message, "tags": expr}).encode()


def pushed_keys(env: WebEnv) -> list[str]:
    return sorted(key for comet in env.comets.values() for keys, _, _ in comet.multi_pushes for key in keys)


def state(env: WebEnv) -> Any:
    """Everything a request could have changed."""
    return copy.deepcopy((env.message.tags, env.message.aliases, env.message.stored,
                          [(c.pushes, c.multi_pushes) for c in env.comets.values()]))


def tag(env: WebEnv, key: str, *tags: str) -> None:
    env.message.tags[key] = set(tags)


# --- /key/tags, /key/info ----------------------------------------------------------------------------------

async def test_key_tags_set_sorted_then_cleared(env: WebEnv) -> None:
    reply = await post(env, "/key/tags", b'["staff","beta","beta"]', key="u1")
    assert reply == {"ret": 0, "msg": "ok", "data": {"key": "u1", "tags": ["beta", "staff"]}}
    assert env.message.tags == {"u1": {"beta", "staff"}}
    assert (await get(env, "/key/info", key="u1"))["data"] == {"key": "u1", "tags": ["beta", "staff"], "alias": None}
    assert (await post(env, "/key/tags", b"[]", key="u1"))["data"] == {"key": "u1", "tags": []}
    assert env.message.tags == {}


BAD_TAGS = [
    ({}, b'["a"]', "key is missing"),
    ({"key": "x" * 129}, b'["a"]', "key is 129 bytes"),
    ({"key": "u1"}, b"", "body is not valid JSON"),
    ({"key": "u1"}, b'["a"', "body is not valid JSON"),
    ({"key": "u1"}, b'{"tags":["a"]}', "body must be a JSON list"),
    ({"key": "u1"}, b'"a"', "body must be a JSON list"),
    ({"key": "u1"}, b"[1]", "tag #1 must be a string"),
    ({"key": "u1"}, b'["a",null]', "tag #2 must be a string"),
    ({"key": "u1"}, b'[""]', "tag #1 is empty"),
    ({"key": "u1"}, b'["a,b"]', "comma, whitespace or a control"),
    ({"key": "u1"}, b'["a b"]', "comma, whitespace or a control"),
    ({"key": "u1"}, b'["a\\u3000b"]', "comma, whitespace or a control"),
    ({"key": "u1"}, b'["a\\u0007"]', "comma, whitespace or a control"),
    ({"key": "u1"}, b'["\\ud800"]', "not valid UTF-8"),
    ({"key": "u1"}, json.dumps(["t" * 65]).encode(), "65 bytes, more than 64"),
    ({"key": "u1"}, json.dumps([f"t{i}" for i in range(65)]).encode(), "65 tags, more than 64"),
    ({"key": "u1"}, b'["' + b"a" * 1100 + b'"]', "more than 1024"),
]


@pytest.mark.parametrize("params,body,reason", BAD_TAGS)
async def test_key_tags_bad_input_is_refused_and_changes_nothing(env: WebEnv, params: dict[str, str], body: bytes,
                                                                  reason: str) -> None:
    tag(env, "u1", "old")
    before = state(env)
    reply = await post(env, "/key/tags", body, **params)
    assert reply["ret"] == 65534 and reason in reply["msg"], reply
    assert state(env) == before


async def test_key_info_of_an_unknown_key_is_empty(env: WebEnv) -> None:
    assert (await get(env, "/key/info", key="nobody"))["data"] == {"key": "nobody", "tags": [], "alias": None}
    assert (await get(env, "/key/info"))["ret"] == 65534


# --- /key/alias, /alias/get --------------------------------------------------------------------------------

async def test_alias_set_moved_replaced_removed(env: WebEnv) -> None:
    reply = await post(env, "/key/alias", key="k1", alias="alice")
    assert reply["data"] == {"key": "k1", "alias": "alice", "moved_from": None, "replaced": None}
    reply = await post(env, "/key/alias", key="k2", alias="alice")
    assert reply["data"] == {"key": "k2", "alias": "alice", "moved_from": "k1", "replaced": None}
    assert (await get(env, "/alias/get", alias="alice"))["data"] == {"alias": "alice", "key": "k2"}
    reply = await post(env, "/key/alias", key="k2", alias="bob")
    assert reply["data"] == {"key": "k2", "alias": "bob", "moved_from": None, "replaced": "alice"}
    assert (await get(env, "/key/info", key="k2"))["data"]["alias"] == "bob"
    reply = await post(env, "/key/alias", key="k2", alias="")
    assert reply["data"] == {"key": "k2", "alias": None, "moved_from": None, "replaced": "bob"}
    assert env.message.aliases == {}


async def test_alias_get_of_an_unknown_alias_is_1001(env: WebEnv) -> None:
    assert await get(env, "/alias/get", alias="ghost") == {"ret": 1001, "msg": "no key has this alias"}


@pytest.mark.parametrize("path,method,params,reason", [
    ("/key/alias", "POST", {"alias": "a"}, "key is missing"),
    ("/key/alias", "POST", {"key": "k1"}, "alias is missing"),
    ("/key/alias", "POST", {"key": "k1", "alias": "a,b"}, "comma"),
    ("/key/alias", "POST", {"key": "k1", "alias": "a\tb"}, "comma"),
    ("/key/alias", "POST", {"key": "k1", "alias": "é" * 33}, "66 bytes"),
    ("/alias/get", "GET", {}, "alias is missing"),
    ("/alias/get", "GET", {"alias": "a b"}, "comma"),
])
async def test_alias_bad_input_is_refused_and_changes_nothing(env: WebEnv, path: str, method: str,
                                                              params: dict[str, str], reason: str) -> None:
    env.message.aliases["a"] = "k0"
    before = state(env)
    reply = await call(env, method, path, b"", **params)
    assert reply["ret"] == 65534 and reason in reply["msg"], reply
    assert state(env) == before


# --- /tag/keys ---------------------------------------------------------------------------------------------

async def test_tag_keys_pages_an_expression(env: WebEnv) -> None:
    for i in range(5):
        tag(env, f"k{i}", "beta", "android" if i % 2 else "ios")
    tag(env, "s1", "staff")
    expr = json.dumps([["beta", "android"], ["staff"]])
    first = (await get(env, "/tag/keys", tags=expr, count="2"))["data"]
    assert first == {"keys": ["k1", "k3"], "next": "k3"}
    assert (await get(env, "/tag/keys", tags=expr, after="k3", count="2"))["data"] == {"keys": ["s1"], "next": None}
    assert (await get(env, "/tag/keys", tags=expr))["data"] == {"keys": ["k1", "k3", "s1"], "next": None}
    assert env.message.tag_pages[-1] == ("", 100)


EXPRESSIONS = [
    ("", "tags is missing"),
    ("[[", "tags is not valid JSON"),
    ("[]", "non-empty JSON list of groups"),
    ('{"a":1}', "non-empty JSON list of groups"),
    ('["a"]', "group #1 must be a non-empty list"),
    ("[[]]", "group #1 must be a non-empty list"),
    ('[["a"],[1]]', "a tag of group #2 must be a string"),
    ('[["a,b"]]', "comma"),
    (json.dumps([["a"]] * 17), "17 groups, more than 16"),
    (json.dumps([["a", "b", "c", "d", "e", "f", "g", "h", "i"]]), "9 tags, more than 8"),
    (json.dumps([["t" * 65]]), "65 bytes"),
]


@pytest.mark.parametrize("expr,reason", EXPRESSIONS)
async def test_tag_keys_bad_expression(env: WebEnv, expr: str, reason: str) -> None:
    reply = await get(env, "/tag/keys", tags=expr)
    assert reply["ret"] == 65534 and reason in reply["msg"], reply
    assert env.message.tag_pages == []


@pytest.mark.parametrize("params,reason", [
    ({"count": "0"}, "count must be"), ({"count": "1001"}, "count must be"), ({"count": "-1"}, "count must be"),
    ({"count": "1e3"}, "count must be"), ({"after": "x" * 129}, "after is 129 bytes"),
])
async def test_tag_keys_bad_page_params(env: WebEnv, params: dict[str, str], reason: str) -> None:
    reply = await get(env, "/tag/keys", tags='[["a"]]', **params)
    assert reply["ret"] == 65534 and reason in reply["msg"], reply
    assert env.message.tag_pages == []


# --- /push/tags --------------------------------------------------------------------------------------------

async def test_push_tags_resolves_then_pushes_each_matching_key_once(env: WebEnv) -> None:
    both = env.key_on("node1", "both")            # in both groups: pushed once
    android = env.key_on("node2", "droid")
    staff = env.key_on("node2", "staff")
    tag(env, both, "beta", "android", "staff")
    tag(env, android, "beta", "android")
    tag(env, staff, "staff")
    tag(env, env.key_on("node1", "ios"), "beta", "ios")     # beta without android: not matched
    env.comets["node1"].online[both] = 2
    env.comets["node2"].online[staff] = 1
    reply = await post(env, "/push/tags", tags_body([["beta", "android"], ["staff"]]), expire="60")
    assert reply == {"ret": 0, "msg": "ok", "data": {"keys": 3, "online": 3, "fk": []}}
    assert pushed_keys(env) == sorted([both, android, staff])
    assert all(msg == MSG and expire == 60 for comet in env.comets.values() for _, msg, expire in comet.multi_pushes)


async def test_push_tags_without_a_match_pushes_nothing(env: WebEnv) -> None:
    reply = await post(env, "/push/tags", tags_body([["nobody"]]), expire="0")
    assert reply["data"] == {"keys": 0, "online": 0, "fk": []}
    assert pushed_keys(env) == []


async def test_push_tags_with_wait_gives_outcomes(env: WebEnv) -> None:
    on, off = env.key_on("node1", "on"), env.key_on("node2", "off")
    tag(env, on, "t")
    tag(env, off, "t")
    env.comets["node1"].online[on] = 1
    reply = await post(env, "/push/tags", tags_body([["t"]]), expire="60", wait="written", timeout="2")
    assert reply["data"] == {"keys": 2, "online": 1, "fk": [], "outcomes": {on: "written", off: "offline"}}


@pytest.fixture
async def big() -> AsyncIterator[WebEnv]:
    web = await start_env(limits={"max_keys_per_push": 300, "max_tag_keys": 2500})
    try:
        yield web
    finally:
        await stop_env(web)


async def test_push_tags_resolves_page_by_page_and_pushes_in_batches(big: WebEnv) -> None:
    keys = [f"user{i:05d}" for i in range(2500)]
    for key in keys:
        tag(big, key, "all")
    reply = await post(big, "/push/tags", tags_body([["all"]]), expire="0")
    assert reply["data"] == {"keys": 2500, "online": 0, "fk": []}
    assert [count for _, count in big.message.tag_pages] == [1000, 1000, 1000]
    assert [after for after, _ in big.message.tag_pages] == ["", "user00999", "user01999"]
    assert pushed_keys(big) == keys
    calls = [batch for comet in big.comets.values() for batch, _, _ in comet.multi_pushes]
    assert calls and max(len(batch) for batch in calls) <= 300


async def test_push_tags_above_max_tag_keys_is_refused_before_any_push(big: WebEnv) -> None:
    for i in range(2501):
        tag(big, f"user{i:05d}", "all")
    reply = await post(big, "/push/tags", tags_body([["all"]]), expire="60")
    assert reply["ret"] == 65534 and "more than 2500 keys" in reply["msg"]
    assert pushed_keys(big) == []
    tag(big, "user00000", "other")   # under the limit again: pushed
    assert (await post(big, "/push/tags", tags_body([["all"]]), expire="60"))["data"]["keys"] == 2500


async def test_push_tags_a_comet_down_fails_only_its_keys(big: WebEnv) -> None:
    keys = [f"user{i:04d}" for i in range(1000)]
    for key in keys:
        tag(big, key, "all")
    big.comets["node2"].unreachable = True
    reply = await post(big, "/push/tags", tags_body([["all"]]), expire="60")
    down = [key for key in keys if big.view.pick(key).name == "node2"]   # type: ignore[union-attr]
    assert len(down) > 300   # more than one batch: the rest failed uncalled
    assert reply["data"] == {"keys": 1000, "online": 0, "fk": down}
    assert pushed_keys(big) == sorted(set(keys) - set(down))


async def test_push_tags_message_node_down_is_65535_and_pushes_nothing(env: WebEnv) -> None:
    tag(env, "u1", "t")
    env.message.unreachable = True
    assert (await post(env, "/push/tags", tags_body([["t"]]), expire="60"))["ret"] == 65535
    assert pushed_keys(env) == []


@pytest.mark.parametrize("params,body,reason", [
    ({}, tags_body([["t"]]), "expire is missing"),
    ({"expire": "-1"}, tags_body([["t"]]), "expire is not"),
    ({"expire": "60", "wait": "read"}, tags_body([["t"]]), "wait must be"),
    ({"expire": "60", "timeout": "1"}, tags_body([["t"]]), "timeout is only valid with wait"),
    ({"expire": "60"}, b"", "body is not valid JSON"),
    ({"expire": "60"}, b"[]", "body is not a JSON object"),
    ({"expire": "60"}, json.dumps({"tags": [["t"]]}).encode(), "m must be"),
    ({"expire": "60"}, json.dumps({"m": "{}"}).encode(), "tags is missing"),
    ({"expire": "60"}, tags_body([["t"]], "{not json"), "message is not valid JSON"),
    ({"expire": "60"}, tags_body([]), "non-empty JSON list"),
    ({"expire": "60"}, tags_body([["t", " x"]]), "comma"),
    ({"expire": "60"}, tags_body([["t"]] * 17), "17 groups"),
    ({"expire": "60"}, tags_body([["t"]], "[" + "1," * 600 + "1]"), "more than 1024"),
])
async def test_push_tags_bad_input_is_refused_and_pushes_nothing(env: WebEnv, params: dict[str, str], body: bytes,
                                                                 reason: str) -> None:
    tag(env, "u1", "t")
    before = state(env)
    reply = await post(env, "/push/tags", body, **params)
    assert reply["ret"] == 65534 and reason in reply["msg"], reply
    assert state(env) == before and env.message.tag_pages == []


# --- /push/alias -------------------------------------------------------------------------------------------

async def test_push_alias_pushes_to_the_aliased_key(env: WebEnv) -> None:
    key = env.key_on("node2")
    env.message.aliases["alice"] = key
    env.comets["node2"].online[key] = 2
    response = await env.admin.post("/push/alias", params={"alias": "alice", "expire": "60"}, content=MSG)
    assert response.content == (b'{"ret":0,"msg":"ok","data":{"key":%b,"mid":1001,"online":2}}'
                                 % json.dumps(key).encode())
    assert env.comets["node2"].pushes == [(key, MSG, 60)]


async def test_push_alias_follows_a_moved_alias(env: WebEnv) -> None:
    old, new = env.key_on("node1", "old"), env.key_on("node2", "new")
    await post(env, "/key/alias", key=old, alias="alice")
    await post(env, "/key/alias", key=new, alias="alice")
    assert (await post(env, "/push/alias", MSG, alias="alice", expire="0"))["data"]["key"] == new
    assert env.comets["node1"].pushes == [] and [p[0] for p in env.comets["node2"].pushes] == [new]


async def test_push_alias_with_wait_gives_the_outcome(env: WebEnv) -> None:
    env.message.aliases["alice"] = "u1"
    reply = await post(env, "/push/alias", MSG, alias="alice", expire="0", wait="written")
    assert reply["data"] == {"key": "u1", "mid": 1001, "online": 0, "outcome": "offline"}


async def test_push_alias_unknown_is_1001_and_pushes_nothing(env: WebEnv) -> None:
    reply = await post(env, "/push/alias", MSG, alias="ghost", expire="60")
    assert reply == {"ret": 1001, "msg": "no key has this alias"}
    assert all(comet.pushes == [] for comet in env.comets.values())


async def test_push_alias_comet_down_is_65535(env: WebEnv) -> None:
    key = env.key_on("node1")
    env.message.aliases["alice"] = key
    env.comets["node1"].unreachable = True
    assert (await post(env, "/push/alias", MSG, alias="alice", expire="60"))["ret"] == 65535


@pytest.mark.parametrize("params,body,reason", [
    ({"expire": "60"}, MSG, "alias is missing"),
    ({"alias": "a b", "expire": "60"}, MSG, "comma"),
    ({"alias": "alice"}, MSG, "expire is missing"),
    ({"alias": "alice", "expire": "60"}, b"", "message is empty"),
    ({"alias": "alice", "expire": "60"}, b"{x", "message is not valid JSON"),
    ({"alias": "alice", "expire": "60", "wait": "acked", "timeout": "0"}, MSG, "timeout 0"),
])
async def test_push_alias_bad_input_is_refused(env: WebEnv, params: dict[str, str], body: bytes,
                                               reason: str) -> None:
    env.message.aliases["alice"] = "u1"
    before = state(env)
    reply = await post(env, "/push/alias", body, **params)
    assert reply["ret"] == 65534 and reason in reply["msg"], reply
    assert state(env) == before


# --- token, methods, message node down ---------------------------------------------------------------------

ENDPOINTS = [
    ("POST", "/push/tags", {"expire": "0"}, tags_body([["t"]])),
    ("POST", "/push/alias", {"alias": "alice", "expire": "0"}, MSG),
    ("POST", "/key/tags", {"key": "u1"}, b'["x"]'),
    ("POST", "/key/alias", {"key": "u2", "alias": "bob"}, b""),
    ("GET", "/key/info", {"key": "u1"}, b""),
    ("GET", "/alias/get", {"alias": "alice"}, b""),
    ("GET", "/tag/keys", {"tags": '[["t"]]'}, b""),
]


@pytest.fixture
async def guarded() -> AsyncIterator[WebEnv]:
    web = await start_env(admin={"token": "s3cret"})
    try:
        yield web
    finally:
        await stop_env(web)


@pytest.mark.parametrize("method,path,params,body", ENDPOINTS)
async def test_token_required(guarded: WebEnv, method: str, path: str, params: dict[str, str], body: bytes) -> None:
    guarded.message.aliases["alice"] = "u1"
    tag(guarded, "u1", "t")
    before = state(guarded)
    for headers in ({}, {"Authorization": "Bearer wrong"}):
        response = await guarded.admin.request(method, path, params=params, content=body, headers=headers)
        assert response.status_code == 401
    assert state(guarded) == before and guarded.message.tag_pages == []
    response = await guarded.admin.request(method, path, params=params, content=body,
                                           headers={"Authorization": "Bearer s3cret"})
    assert response.status_code == 200 and envelope(response)["ret"] == 0, response.text


@pytest.mark.parametrize("method,path,params,body", ENDPOINTS)
async def test_wrong_method_is_405_and_message_down_is_65535(env: WebEnv, method: str, path: str,
                                                             params: dict[str, str], body: bytes) -> None:
    other = "GET" if method == "POST" else "POST"
    assert (await env.admin.request(other, path, params=params, content=body)).status_code == 405
    env.message.unreachable = True
    assert (await call(env, method, path, body, **params))["ret"] == 65535
    response = await env.public.request(method, path, params=params, content=body)
    assert response.status_code == 404   # admin listener only


async def test_node_keeps_serving_after_bad_requests(env: WebEnv) -> None:
    for body in (b"\xff\xfe", b'{"m": 1, "tags": "x"}', b"[" * 1000, b'{"m":"{}","tags":' + b"[" * 1000):
        assert (await post(env, "/push/tags", body, expire="0"))["ret"] == 65534
        assert (await post(env, "/key/tags", body, key="u1"))["ret"] == 65534
    assert (await get(env, "/tag/keys", tags="[" * 3000))["ret"] == 65534
    assert (await get(env, "/tag/keys", tags="%ff"))["ret"] == 65534
    await env.assert_alive()
    assert env.message.tags == {} and pushed_keys(env) == []
