"""Tags and aliases end to end: the admin API of a web node -> the message node's directory (real Redis) -> two
comets (real processes, one ring of node1 and node2) -> real TCP clients, and the offline fetch.

A tag push resolves its expression to keys on the message node, then pushes them through the multi-key path
(here at most 4 keys per comet call, so every comet gets several calls): each matching key gets the message once,
however many groups it matches, and no other key gets it. Whether a connection got something is checked by pushing
a private marker afterwards: the next frame a connection reads is either the tag push or the marker.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any, AsyncIterator

import pytest

from tests.integration.conftest import TcpSubscriber
from tests.integration.two_comets import COMETS, TwoComets, two_comets

pytestmark = [pytest.mark.redis, pytest.mark.integration]

MAX_TAG_KEYS = 30
EXPR = [["beta", "android"], ["staff"]]
MARKER = {"marker": True}


class Stack(TwoComets):
    """The running stack, with the calls these tests make: the admin API, tag pushes, subscribers, stored messages."""

    async def call(self, method: str, path: str, body: bytes = b"", **params: Any) -> dict[str, Any]:
        reply = await self.http.request(method, f"{self.admin}{path}", params=params, content=body)
        assert reply.status_code == 200, reply.text
        result: dict[str, Any] = reply.json()
        return result

    async def ok(self, method: str, path: str, body: bytes = b"", **params: Any) -> Any:
        result = await self.call(method, path, body, **params)
        assert result["ret"] == 0, result
        return result["data"]

    async def push_tags(self, expr: Any, body: Any, expire: int = 600, **params: Any) -> dict[str, Any]:
        return await self.call("POST", "/push/tags", json.dumps({"m": json.dumps(body), "tags": expr}).encode(),
                               expire=expire, **params)

    async def subscribe(self, key: str) -> TcpSubscriber:
        return await TcpSubscriber.connect(self.tcp[self.comet_of(key)], key)

    async def stored(self, key: str) -> list[Any]:
        reply = await self.http.get(f"{self.public}/1/msg/get", params={"k": key, "m": 0})
        assert reply.status_code == 200 and reply.json()["ret"] == 0, reply.text
        return [item["msg"] for item in reply.json().get("data", {}).get("msgs", [])]


async def next_message(sub: TcpSubscriber) -> Any:
    return json.loads(await sub.frame())["msg"]


@pytest.fixture
async def stack(redis_url: str, tmp_path: Path) -> AsyncIterator[Stack]:
    async with two_comets(Stack, redis_url, tmp_path,
                          {"limits": {"max_keys_per_push": 4, "max_tag_keys": MAX_TAG_KEYS}}) as running:
        yield running


# Tag combinations: which of them EXPR = (beta AND android) OR staff matches.
COMBOS: list[tuple[list[str], bool]] = [
    (["beta", "android"], True),
    (["beta", "android", "staff"], True),    # in both groups: gets it once
    (["staff", "ios"], True),
    (["beta", "ios"], False),
    (["android"], False),
    ([], False),
]


async def test_tag_expression_reaches_each_matching_key_once(stack: Stack) -> None:
    keys = {f"user{i}": COMBOS[i % len(COMBOS)] for i in range(18)}
    for key, (tags, _) in keys.items():
        assert (await stack.ok("POST", "/key/tags", json.dumps(tags).encode(), key=key))["tags"] == sorted(tags)
    matching = sorted(key for key, (_, match) in keys.items() if match)
    assert {stack.comet_of(key) for key in matching} == set(COMETS)
    offline = {key for n, key in enumerate(matching) if n % 4 == 0}   # some matching keys have no connection
    online = [key for key in keys if key not in offline]
    subs: list[TcpSubscriber] = []
    try:
        by_key: dict[str, list[TcpSubscriber]] = {}
        for n, key in enumerate(online):
            by_key[key] = [await stack.subscribe(key) for _ in range(1 + n % 2)]   # one or two connections
            subs.extend(by_key[key])
        expected_online = sum(len(by_key[key]) for key in matching if key in by_key)
        assert await stack.ok("GET", "/tag/keys", tags=json.dumps(EXPR), count=1000) == {"keys": matching,
                                                                                          "next": None}

        data = (await stack.push_tags(EXPR, {"to": "tags"}))["data"]
        assert data == {"keys": len(matching), "online": expected_online, "fk": []}
        for key in online:
            assert (await stack.ok("POST", "/push/private", json.dumps(MARKER).encode(), key=key, expire=0))
        for key, key_subs in by_key.items():
            for sub in key_subs:
                if key in matching:
                    assert await next_message(sub) == {"to": "tags"}, key
                assert await next_message(sub) == MARKER, key   # nothing else came before the marker
        for key in keys:
            assert await stack.stored(key) == ([{"to": "tags"}] if key in matching else []), key
    finally:
        for sub in subs:
            await sub.close()


async def test_tag_push_waiting_for_written(stack: Stack) -> None:
    on, off = "wait-on", "wait-off"
    for key in (on, off):
        await stack.ok("POST", "/key/tags", b'["w"]', key=key)
    sub = await stack.subscribe(on)
    try:
        data = (await stack.push_tags([["w"]], {"n": 1}, expire=0, wait="written", timeout="2"))["data"]
        assert data == {"keys": 2, "online": 1, "fk": [], "outcomes": {on: "written", off: "offline"}}
        assert await next_message(sub) == {"n": 1}
    finally:
        await sub.close()


async def test_alias_moved_between_keys_reaches_the_new_key_only(stack: Stack) -> None:
    old, new = "alias-old", "alias-new"
    subs = {key: await stack.subscribe(key) for key in (old, new)}
    try:
        assert (await stack.ok("POST", "/key/alias", key=old, alias="alice"))["moved_from"] is None
        assert (await stack.ok("POST", "/push/alias", b'{"n":1}', alias="alice", expire=600))["key"] == old
        assert await next_message(subs[old]) == {"n": 1}

        moved = await stack.ok("POST", "/key/alias", key=new, alias="alice")
        assert moved == {"key": new, "alias": "alice", "moved_from": old, "replaced": None}
        assert await stack.ok("GET", "/alias/get", alias="alice") == {"alias": "alice", "key": new}
        assert (await stack.ok("GET", "/key/info", key=old))["alias"] is None
        data = await stack.ok("POST", "/push/alias", b'{"n":2}', alias="alice", expire=600)
        assert data["key"] == new and data["online"] == 1
        assert await next_message(subs[new]) == {"n": 2}
        await stack.ok("POST", "/push/private", json.dumps(MARKER).encode(), key=old, expire=0)
        assert await next_message(subs[old]) == MARKER
        assert await stack.stored(old) == [{"n": 1}] and await stack.stored(new) == [{"n": 2}]

        await stack.ok("POST", "/key/alias", key=new, alias="")
        assert await stack.call("POST", "/push/alias", b'{"n":3}', alias="alice", expire=600) == {
            "ret": 1001, "msg": "no key has this alias"}
        assert await stack.stored(new) == [{"n": 2}]
    finally:
        for sub in subs.values():
            await sub.close()


async def test_more_than_max_tag_keys_is_refused_before_anything_is_pushed(stack: Stack) -> None:
    keys = [f"many{i:02d}" for i in range(MAX_TAG_KEYS + 1)]
    for key in keys:
        await stack.ok("POST", "/key/tags", b'["crowd"]', key=key)
    reply = await stack.push_tags([["crowd"]], {"n": 1})
    assert reply["ret"] == 65534 and f"more than {MAX_TAG_KEYS} keys" in reply["msg"], reply
    assert [await stack.stored(key) for key in keys] == [[]] * len(keys)
    await stack.ok("POST", "/key/tags", b"[]", key=keys[0])          # one fewer: exactly the limit, pushed
    assert (await stack.push_tags([["crowd"]], {"n": 2}))["data"] == {"keys": MAX_TAG_KEYS, "online": 0, "fk": []}
    assert [await stack.stored(key) for key in keys[1:]] == [[{"n": 2}]] * MAX_TAG_KEYS


async def test_a_comet_down_fails_only_its_keys(stack: Stack) -> None:
    keys = [f"down{i:02d}" for i in range(20)]
    for key in keys:
        await stack.ok("POST", "/key/tags", b'["d"]', key=key)
    lost = [key for key in keys if stack.comet_of(key) == "node2"]
    kept = [key for key in keys if stack.comet_of(key) == "node1"]
    assert len(lost) > 4 and kept   # node2's keys take more than one call
    subs = {key: await stack.subscribe(key) for key in kept[:3]}
    try:
        stack.comets["node2"].kill()
        data = (await stack.push_tags([["d"]], {"n": 1}))["data"]
        assert data == {"keys": len(keys), "online": len(subs), "fk": lost}
        for sub in subs.values():
            assert await next_message(sub) == {"n": 1}
        for key in kept:
            assert await stack.stored(key) == [{"n": 1}]
        for key in lost:
            assert await stack.stored(key) == []
    finally:
        for sub in subs.values():
            await sub.close()
