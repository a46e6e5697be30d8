"""Broadcast on a real web node over HTTP, with fake comets and a fake message node: POST /push/all (params, body
limits, comets that fail -> fc, a failed save -> 65535 and nothing sent, one broadcast at a time) and the public part
of the fetches (/msg/get?pmid=, /1/msg/get?p=)."""
from __future__ import annotations

import asyncio
import json
import logging
from typing import Any, AsyncIterator

import httpx
import pytest

from tests.helpers import eventually
from tests.web.conftest import WebEnv, envelope, start_env, stop_env
from tests.web.fakes import FakeComet, node_info
from thirdparty.confload import ConfigError
from web.config import load

JSON = "application/json;charset=utf-8"


async def push_all(env: WebEnv, body: bytes = b'{"news":1}', **params: str) -> Any:
    response = await env.admin.post("/push/all", params=params, content=body)
    assert response.status_code == 200, response.text
    return envelope(response)


def nothing_sent(env: WebEnv, next_mid: int = 5000) -> bool:
    return env.message.next_public_mid == next_mid and not any(c.broadcasts for c in env.comets.values())


# --- POST /push/all ------------------------------------------------------------------------------------------

async def test_push_all_reaches_every_comet_and_sums_online(env: WebEnv) -> None:
    env.comets["node1"].public_online, env.comets["node2"].public_online = 3, 4
    response = await env.admin.post("/push/all", params={"expire": "600"}, content=' {"news": "中文"}\n'.encode())
    assert response.content == b'{"ret":0,"msg":"ok","data":{"mid":5001,"online":7,"fc":[]}}'
    message = '{"news": "中文"}'.encode()
    assert env.comets["node1"].broadcasts == env.comets["node2"].broadcasts == [(5001, message)]
    assert env.message.public == [(5001, message)]
    assert all(not comet.pushes and not comet.multi_pushes for comet in env.comets.values())


async def test_push_all_with_expire_zero_gets_a_mid_and_is_not_stored(env: WebEnv) -> None:
    assert (await push_all(env, expire="0"))["data"] == {"mid": 5001, "online": 0, "fc": []}
    assert env.message.public == []
    assert env.comets["node1"].broadcasts == [(5001, b'{"news":1}')]


@pytest.mark.parametrize("params,body", [
    ({}, b"1"),                                     # no expire
    ({"expire": ""}, b"1"),
    ({"expire": "-1"}, b"1"),
    ({"expire": "1h"}, b"1"),
    ({"expire": "2592001"}, b"1"),                  # above max_expire
    ({"expire": "60"}, b""),                        # empty body
    ({"expire": "60"}, b" \r\n"),
    ({"expire": "60"}, b'{"a":'),                   # bad JSON
    ({"expire": "60"}, b"hello"),
    ({"expire": "60"}, b"NaN"),
    ({"expire": "60"}, b'{"a":1} {"b":2}'),
    ({"expire": "60"}, b'"\xff"'),                  # not UTF-8
    ({"expire": "60"}, b"[" * 1000 + b"]" * 1000),  # too deep to parse
    ({"expire": "60"}, b'"' + b"x" * 1023 + b'"'),  # 1025 bytes > max_body_bytes (1024)
])
async def test_bad_input_is_65534_and_nothing_is_saved_or_sent(env: WebEnv, params: dict[str, str],
                                                              body: bytes) -> None:
    assert await push_all(env, body, **params) == {"ret": 65534, "msg": "param error"}
    assert nothing_sent(env)
    await env.assert_alive()


async def test_a_body_of_max_body_bytes_is_accepted(env: WebEnv) -> None:
    body = b'"' + b"x" * 1022 + b'"'
    assert (await push_all(env, body, expire="2592000"))["ret"] == 0
    assert env.message.public == [(5001, body)]


async def test_a_body_above_the_hard_cap_is_refused_unread(env: WebEnv) -> None:
    try:
        response = await env.admin.post("/push/all", params={"expire": "0"}, content=b'"' + b"x" * 4096 + b'"')
    except httpx.HTTPError:
        pass  # the server may close before the client finishes sending
    else:
        assert response.status_code == 400
    assert nothing_sent(env)
    await env.assert_alive()


async def test_push_all_is_post_only_and_admin_only(env: WebEnv) -> None:
    assert (await env.admin.get("/push/all", params={"expire": "0"})).status_code == 405
    assert (await env.public.post("/push/all", params={"expire": "0"}, content=b"1")).status_code == 404
    assert nothing_sent(env)


async def test_push_all_needs_the_admin_token_when_one_is_set() -> None:
    env = await start_env(admin={"token": "s3cret"})
    try:
        refused = await env.admin.post("/push/all", params={"expire": "0"}, content=b"1")
        assert refused.status_code == 401 and nothing_sent(env)
        ok = await env.admin.post("/push/all", params={"expire": "0"}, content=b"1",
                                  headers={"Authorization": "Bearer s3cret"})
        assert envelope(ok)["data"]["mid"] == 5001
    finally:
        await stop_env(env)


@pytest.mark.parametrize("failure", ["unreachable", "error"])
async def test_a_failing_comet_is_named_in_fc_and_the_others_still_get_it(env: WebEnv, failure: str,
                                                                          caplog: pytest.LogCaptureFixture) -> None:
    env.comets["node1"].public_online = 5
    if failure == "unreachable":
        env.comets["node2"].unreachable = True
    else:
        env.comets["node2"].error = (65535, "broadcast queue full")
    caplog.set_level(logging.INFO, logger="web.broadcast")
    assert (await push_all(env, expire="60"))["data"] == {"mid": 5001, "online": 5, "fc": ["node2"]}
    assert env.comets["node1"].broadcasts == [(5001, b'{"news":1}')]
    failures = [r for r in caplog.records if r.levelno == logging.ERROR and "node2" in r.getMessage()]
    assert len(failures) == 1 and "mid=5001" in failures[0].getMessage() and not failures[0].exc_info


async def test_every_comet_failing_still_answers_ret_0_with_every_name(env: WebEnv) -> None:
    for comet in env.comets.values():
        comet.unreachable = True
    assert (await push_all(env, expire="60"))["data"] == {"mid": 5001, "online": 0, "fc": ["node1", "node2"]}
    assert env.message.public == [(5001, b'{"news":1}')]


async def test_a_comet_without_an_rpc_address_is_in_fc(env: WebEnv) -> None:
    node1 = [info for info in env.config.comet_nodes() if info.name == "node1"]
    await env.view.update([*node1, node_info("node2", rpc=[])])
    assert (await push_all(env, expire="0"))["data"]["fc"] == ["node2"]
    assert env.comets["node1"].broadcasts and not env.comets["node2"].broadcasts


async def test_no_comet_in_the_view_stores_it_and_reaches_nobody(env: WebEnv) -> None:
    await env.view.update([])
    assert (await push_all(env, expire="60"))["data"] == {"mid": 5001, "online": 0, "fc": []}
    assert env.message.public == [(5001, b'{"news":1}')]


@pytest.fixture
async def slow_env() -> AsyncIterator[WebEnv]:
    web = await start_env(rpc={"comet_timeout": 0.2})
    try:
        yield web
    finally:
        await stop_env(web)


async def test_a_comet_that_does_not_answer_in_comet_timeout_is_in_fc(slow_env: WebEnv) -> None:
    slow_env.comets["node2"].public_gate = asyncio.Event()   # never set: node2 never answers
    slow_env.comets["node1"].public_online = 2
    assert (await push_all(slow_env, expire="0"))["data"] == {"mid": 5001, "online": 2, "fc": ["node2"]}


@pytest.mark.parametrize("failure", ["unreachable", "error"])
async def test_a_failed_save_is_65535_and_no_comet_is_called(env: WebEnv, failure: str) -> None:
    if failure == "unreachable":
        env.message.unreachable = True
    else:
        env.message.error = (65534, "expire above max_expire")
    assert await push_all(env, expire="60") == {"ret": 65535, "msg": "internal error"}
    assert not any(comet.broadcasts for comet in env.comets.values())
    env.message.unreachable, env.message.error = False, None
    assert (await push_all(env, expire="60"))["ret"] == 0


async def test_one_web_node_sends_one_broadcast_at_a_time_in_mid_order(env: WebEnv) -> None:
    gate = env.comets["node2"].public_gate = asyncio.Event()
    first = asyncio.create_task(push_all(env, b'{"n":1}', expire="60"))
    await eventually(lambda: len(env.comets["node2"].broadcasts) == 1)
    second = asyncio.create_task(push_all(env, b'{"n":2}', expire="60"))
    await eventually(lambda: env.node.stats.listener("admin").requests == 2)
    await asyncio.sleep(0.05)
    assert env.message.next_public_mid == 5001, "the second save waits for every comet's answer to the first"
    gate.set()
    replies = [await first, await second]
    assert [reply["data"]["mid"] for reply in replies] == [5001, 5002]
    for comet in env.comets.values():
        assert comet.broadcasts == [(5001, b'{"n":1}'), (5002, b'{"n":2}')]


async def test_push_all_is_counted_in_the_admin_stats(env: WebEnv) -> None:
    await push_all(env, expire="0")
    await push_all(env, b"{bad", expire="0")
    env.message.unreachable = True
    await push_all(env, expire="0")
    stats = env.node.stats.listener("admin").snapshot()
    assert stats["requests"] == 3
    assert stats["refusals"]["param_error"] == 1 and stats["refusals"]["internal_error"] == 1


# --- the public part of /msg/get and /1/msg/get --------------------------------------------------------------

def store_public(env: WebEnv) -> None:
    env.message.public = [(11, b'{"p": "one"}'), (12, b'"two"')]


async def test_v1_fetch_with_p_returns_private_and_public_messages(env: WebEnv) -> None:
    env.message.stored["u1"] = [(5, b'{"a":1}')]
    store_public(env)
    response = await env.public.get("/1/msg/get", params={"k": "u1", "m": "0", "p": "0"})
    assert response.headers["content-type"] == JSON
    assert response.content == (b'{"ret":0,"msg":"ok","data":{"msgs":[{"msg":{"a":1},"mid":5,"gid":0}],"pmsgs":['
                                b'{"msg":{"p": "one"},"mid":11,"gid":1},{"msg":"two","mid":12,"gid":1}]}}')
    data = (await env.get("/1/msg/get", k="u1", m="5", p="11"))["data"]
    assert data == {"msgs": [], "pmsgs": [{"msg": "two", "mid": 12, "gid": 1}]}


async def test_legacy_fetch_with_pmid_returns_public_messages_as_json_strings(env: WebEnv) -> None:
    store_public(env)
    response = await env.public.get("/msg/get", params={"key": "u1", "mid": "0", "pmid": "0"})
    assert response.content == (
        b'{"ret":0,"msg":"ok","data":{"msgs":[],"pmsgs":['
        b'"{\\"msg\\":\\"{\\\\\\"p\\\\\\": \\\\\\"one\\\\\\"}\\",\\"mid\\":11,\\"gid\\":1}",'
        b'"{\\"msg\\":\\"\\\\\\"two\\\\\\"\\",\\"mid\\":12,\\"gid\\":1}"]}}')
    inner = [json.loads(item) for item in response.json()["data"]["pmsgs"]]
    assert inner == [{"msg": '{"p": "one"}', "mid": 11, "gid": 1}, {"msg": '"two"', "mid": 12, "gid": 1}]


async def test_without_p_the_fetch_is_unchanged(env: WebEnv) -> None:
    env.message.stored["u1"] = [(5, b"1")]
    store_public(env)
    assert (await env.get("/1/msg/get", k="u1", m="0"))["data"] == {"msgs": [{"msg": 1, "mid": 5, "gid": 0}]}
    assert (await env.get("/1/msg/get", k="u1", m="5")) == {"ret": 0, "msg": "ok"}
    assert (await env.get("/1/msg/get", k="u1", m="5", p="")) == {"ret": 0, "msg": "ok"}
    assert (await env.get("/msg/get", key="u1", mid="0"))["data"]["pmsgs"] == []
    env.message.public_trimmed = True
    assert (await env.get("/1/msg/get", k="u1", m="5")) == {"ret": 0, "msg": "ok"}


@pytest.mark.parametrize("path,names", [("/msg/get", ("key", "mid", "pmid")), ("/1/msg/get", ("k", "m", "p"))])
async def test_nothing_new_on_either_side_has_no_data(env: WebEnv, path: str, names: tuple[str, str, str]) -> None:
    env.message.stored["u1"] = [(5, b"1")]
    store_public(env)
    key, mid, pmid = names
    assert await env.get(path, **{key: "u1", mid: "5", pmid: "12"}) == {"ret": 0, "msg": "ok"}
    assert await env.get(path, **{key: "u1", mid: "5", pmid: str(2 ** 63 - 1)}) == {"ret": 0, "msg": "ok"}
    data = (await env.get(path, **{key: "u1", mid: "0", pmid: "12"}))["data"]
    assert len(data["msgs"]) == 1 and data["pmsgs"] == []


@pytest.mark.parametrize("path,names", [("/msg/get", ("key", "mid", "pmid")), ("/1/msg/get", ("k", "m", "p"))])
async def test_public_trimmed_is_reported_as_ptrimmed(env: WebEnv, path: str, names: tuple[str, str, str]) -> None:
    key, mid, pmid = names
    env.message.public_trimmed = True
    assert (await env.get(path, **{key: "u1", mid: "0", pmid: "0"}))["data"] == {
        "msgs": [], "pmsgs": [], "ptrimmed": True}
    env.message.trimmed.add("u1")
    data = (await env.get(path, **{key: "u1", mid: "0", pmid: "0"}))["data"]
    assert data["trimmed"] is True and data["ptrimmed"] is True


@pytest.mark.parametrize("path,names", [("/msg/get", ("key", "mid", "pmid")), ("/1/msg/get", ("k", "m", "p"))])
@pytest.mark.parametrize("value", ["-1", "+1", "1.5", "abc", " 1", "9223372036854775808", "١"])
async def test_a_bad_public_mid_is_65534(env: WebEnv, path: str, names: tuple[str, str, str], value: str) -> None:
    key, mid, pmid = names
    assert await env.get(path, **{key: "u1", mid: "0", pmid: value}) == {"ret": 65534, "msg": "param error"}
    await env.assert_alive()


@pytest.mark.parametrize("path,names", [("/msg/get", ("key", "mid", "pmid")), ("/1/msg/get", ("k", "m", "p"))])
async def test_message_node_unreachable_is_65535_with_p(env: WebEnv, path: str, names: tuple[str, str, str]) -> None:
    key, mid, pmid = names
    env.message.unreachable = True
    assert await env.get(path, **{key: "u1", mid: "0", pmid: "0"}) == {"ret": 65535, "msg": "internal error"}
    env.message.unreachable = False
    await env.assert_alive()


async def test_jsonp_fetch_with_p(env: WebEnv) -> None:
    store_public(env)
    response = await env.public.get("/1/msg/get", params={"k": "u1", "m": "0", "p": "0", "cb": "f"})
    assert response.text.startswith('f({"ret":0') and '"pmsgs":[{"msg":{"p": "one"},"mid":11,"gid":1}' in response.text


async def test_a_stored_public_message_that_is_not_json_is_sent_as_null(env: WebEnv) -> None:
    env.message.public = [(11, b"\xff"), (12, b"1")]
    data = (await env.get("/1/msg/get", k="u1", m="0", p="0"))["data"]
    assert data["pmsgs"] == [{"msg": None, "mid": 11, "gid": 1}, {"msg": 1, "mid": 12, "gid": 1}]
    legacy = (await env.get("/msg/get", key="u1", mid="0", pmid="0"))["data"]
    assert [json.loads(item) for item in legacy["pmsgs"]] == [{"msg": None, "mid": 11, "gid": 1},
                                                             {"msg": "1", "mid": 12, "gid": 1}]


# --- background retries of the comets in fc (web/broadcast_retry.py) ------------------------------------------

RETRY = {"retry_interval": 0.05, "retry_for": 30.0}


@pytest.fixture
async def retry_env() -> AsyncIterator[WebEnv]:
    web = await start_env(broadcast=RETRY)
    try:
        yield web
    finally:
        await stop_env(web)


def retry_stats(env: WebEnv) -> dict[str, int]:
    assert env.node.broadcast_retries is not None
    return env.node.broadcast_retries.stats()


@pytest.mark.parametrize("expire", ["60", "0"])
async def test_a_comet_failing_twice_gets_the_broadcast_at_the_third_attempt(
        retry_env: WebEnv, expire: str, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="web.broadcast_retry")
    node2 = retry_env.comets["node2"]
    node2.public_failures = 2
    assert (await push_all(retry_env, b'{"n":7}', expire=expire))["data"]["fc"] == ["node2"]
    await eventually(lambda: node2.broadcasts == [(5001, b'{"n":7}')])
    assert node2.public_calls == 3
    assert retry_env.comets["node1"].broadcasts == [(5001, b'{"n":7}')], "the comet that answered is not retried"
    await eventually(lambda: retry_stats(retry_env)["pending"] == 0)
    assert retry_stats(retry_env) == {"pending": 0, "succeeded": 1, "given_up": 0, "left_view": 0, "dropped": 0}
    done = [r.getMessage() for r in caplog.records if "succeeded" in r.getMessage()]
    assert len(done) == 1 and "mid=5001" in done[0] and "node2" in done[0] and "attempt 3" in done[0]
    stat = envelope(await retry_env.admin.get("/stat"))["data"]
    assert stat["broadcast_retries"]["succeeded"] == 1


async def test_a_name_that_left_the_view_is_not_retried(retry_env: WebEnv) -> None:
    node2 = retry_env.comets["node2"]
    node2.unreachable = True
    assert (await push_all(retry_env, expire="60"))["data"]["fc"] == ["node2"]
    node1 = [info for info in retry_env.config.comet_nodes() if info.name == "node1"]
    await retry_env.view.update(node1)
    node2.unreachable = False
    await eventually(lambda: retry_stats(retry_env)["left_view"] == 1)
    assert retry_stats(retry_env)["pending"] == 0 and retry_stats(retry_env)["succeeded"] == 0
    assert node2.broadcasts == []


async def test_the_retry_gives_up_after_retry_for(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="web.broadcast_retry")
    env = await start_env(broadcast={"retry_interval": 0.05, "retry_for": 0.3})
    try:
        env.comets["node2"].unreachable = True
        assert (await push_all(env, expire="60"))["data"]["fc"] == ["node2"]
        await eventually(lambda: retry_stats(env)["given_up"] == 1)
        assert retry_stats(env)["pending"] == 0 and retry_stats(env)["succeeded"] == 0
        assert env.comets["node2"].public_calls >= 2, "retried before giving up"
        env.comets["node2"].unreachable = False
        assert (await push_all(env, b"2", expire="60"))["data"]["fc"] == []
        assert env.comets["node2"].broadcasts == [(5002, b"2")], "the given-up broadcast is not sent any more"
        given_up = [r for r in caplog.records if "given up" in r.getMessage()]
        assert len(given_up) == 1 and given_up[0].levelno == logging.WARNING
        assert "mid=5001" in given_up[0].getMessage() and "node2" in given_up[0].getMessage()
        assert not any(r.levelno >= logging.ERROR and r.name == "web.broadcast_retry" for r in caplog.records)
    finally:
        await stop_env(env)


async def test_past_max_pending_retries_the_oldest_is_dropped(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="web.broadcast_retry")
    env = await start_env(broadcast={**RETRY, "max_pending_retries": 2})
    try:
        node2 = env.comets["node2"]
        node2.unreachable = True
        for n in (1, 2, 3):
            assert (await push_all(env, b"%d" % n, expire="60"))["data"]["fc"] == ["node2"]
        assert retry_stats(env)["dropped"] == 1 and retry_stats(env)["pending"] == 2
        dropped = [r.getMessage() for r in caplog.records if "dropped" in r.getMessage()]
        assert len(dropped) == 1 and "mid=5001" in dropped[0]
        node2.unreachable = False
        await eventually(lambda: node2.broadcasts == [(5002, b"2"), (5003, b"3")])
        await eventually(lambda: retry_stats(env)["pending"] == 0)
        assert retry_stats(env)["succeeded"] == 2
    finally:
        await stop_env(env)


async def test_the_node_stop_cancels_pending_retries() -> None:
    env = await start_env(broadcast=RETRY)
    try:
        node2 = env.comets["node2"]
        node2.unreachable = True
        assert (await push_all(env, expire="60"))["data"]["fc"] == ["node2"]
        await eventually(lambda: node2.public_calls >= 2)   # retrying
    finally:
        await stop_env(env)
    assert retry_stats(env)["pending"] == 0
    calls = node2.public_calls
    node2.unreachable = False
    await asyncio.sleep(0.2)   # four retry intervals: a retry still running would have called the comet
    assert node2.public_calls == calls and node2.broadcasts == []


async def test_two_retried_broadcasts_reach_the_promoted_node_in_mid_order(retry_env: WebEnv) -> None:
    node2 = retry_env.comets["node2"]
    node2.unreachable = True
    for body in (b'"a"', b'"b"'):
        assert (await push_all(retry_env, body, expire="0"))["data"]["fc"] == ["node2"]
    # a failover: the name node2 now belongs to another instance (another rpc address, another client)
    standby = retry_env.comets["node2"] = FakeComet("node2")
    standby.public_failures = 1   # the older one fails once more: the newer one must not overtake it
    node1 = [info for info in retry_env.config.comet_nodes() if info.name == "node1"]
    await retry_env.view.update([*node1, node_info("node2", rpc=["127.0.0.1:9"])])
    await eventually(lambda: len(standby.broadcasts) == 2)
    assert standby.broadcasts == [(5001, b'"a"'), (5002, b'"b"')]
    assert node2.broadcasts == []
    await eventually(lambda: retry_stats(retry_env)["pending"] == 0)
    assert retry_stats(retry_env)["succeeded"] == 2


async def test_retry_for_zero_turns_retries_off() -> None:
    env = await start_env(broadcast={"retry_for": 0.0})
    try:
        env.comets["node2"].unreachable = True
        assert (await push_all(env, expire="60"))["data"]["fc"] == ["node2"]
        assert retry_stats(env)["pending"] == 0
    finally:
        await stop_env(env)


@pytest.mark.parametrize("values", [{"retry_interval": 0}, {"retry_interval": -1.0}, {"retry_for": -1.0},
                                    {"max_pending_retries": 0}])
def test_bad_broadcast_config_is_refused(values: dict[str, Any]) -> None:
    with pytest.raises(ConfigError, match="broadcast"):
        load(None, {"broadcast": values})
