"""The server SDK's broadcast, tag and alias methods against a real web node, message node (Redis) and comet:
each typed result, and each error by ret code (before any request when the argument is invalid)."""
from __future__ import annotations

import asyncio
from typing import Any

import pytest

from comet.subscriber_api import Message
from tests.helpers import eventually
from tests.sdk.conftest import SdkCluster, collect
from web.push_client import (
    AliasChange, AuthError, BadParameterError, BroadcastResult, KeyInfo, KeyTags, NoNodeError, PushClient,
    PushResult, TagKeysPage, TagPushResult,
)

pytestmark = [pytest.mark.redis, pytest.mark.integration]


def client(cluster: SdkCluster, **options: Any) -> PushClient:
    options.setdefault("token", cluster.admin_token or None)
    return PushClient(cluster.admin, public_url=cluster.public, **options)


async def listening(cluster: SdkCluster, key: str) -> tuple[list[Message], asyncio.Task[None]]:
    got: list[Message] = []
    subscriber = cluster.subscriber(key, last_pmid=None)
    task = asyncio.create_task(collect(subscriber, got))
    await asyncio.wait_for(subscriber.wait_live(), 5)
    return got, task


async def test_tags_and_aliases_are_set_read_and_resolved(cluster: SdkCluster) -> None:
    async with client(cluster) as push:
        assert await push.set_tags("alice", ["staff", "beta", "beta"]) == KeyTags("alice", ["beta", "staff"])
        assert await push.set_tags("bob", ["beta", "android"]) == KeyTags("bob", ["android", "beta"])
        assert await push.set_tags("carol", ["android"]) == KeyTags("carol", ["android"])
        assert await push.set_alias("alice", "a@x") == AliasChange("alice", "a@x", None, None)
        assert await push.set_alias("bob", "a@x") == AliasChange("bob", "a@x", "alice", None)   # moved
        assert await push.set_alias("bob", "b@x") == AliasChange("bob", "b@x", None, "a@x")     # replaced
        assert await push.key_info("bob") == KeyInfo("bob", ["android", "beta"], "b@x")
        assert await push.key_info("alice") == KeyInfo("alice", ["beta", "staff"], None)
        assert await push.alias_key("b@x") == "bob" and await push.alias_key("a@x") is None

        expr = [["beta", "android"], ["staff"]]
        assert await push.tag_keys(expr) == TagKeysPage(["alice", "bob"], None)
        first = await push.tag_keys([["beta"], ["android"]], count=2)
        assert first.keys == ["alice", "bob"] and first.next == "bob"
        assert await push.tag_keys([["beta"], ["android"]], after=first.next, count=2) == TagKeysPage(["carol"], None)

        assert await push.set_alias("bob", "") == AliasChange("bob", None, None, "b@x")
        assert await push.set_tags("carol", []) == KeyTags("carol", [])
        assert await push.key_info("carol") == KeyInfo("carol", [], None)


async def test_push_tags_and_alias_reach_the_subscribers(cluster: SdkCluster) -> None:
    got_a, task_a = await listening(cluster, "alice")
    got_b, task_b = await listening(cluster, "bob")
    async with client(cluster) as push:
        await push.set_tags("alice", ["beta"])
        await push.set_tags("bob", ["beta", "android"])
        await push.set_tags("dave", ["beta"])                              # offline
        await push.set_alias("bob", "bob@x")
        tagged = await push.push_tags([["beta"]], {"t": 1}, expire=600)
        assert tagged == TagPushResult(keys=3, online=2, failed_keys=[], outcomes={})
        waited = await push.push_tags([["android"]], {"t": 2}, expire=600, wait="acked", timeout=5)
        assert (waited.keys, waited.outcomes) == (1, {"bob": "acked"})
        aliased = await push.push_alias("bob@x", {"t": 3}, expire=600, wait="acked", timeout=5)
        assert isinstance(aliased, PushResult) and (aliased.key, aliased.online, aliased.outcome) == ("bob", 1, "acked")
        assert (await push.push_alias("bob@x", {"t": 4}, expire=0)).outcome is None
        nobody = await push.push_tags([["nobody"]], {"t": 5}, expire=600)
        assert nobody == TagPushResult(0, 0, [], {})
        await eventually(lambda: len(got_a) == 1 and len(got_b) == 4)
        assert [m.value for m in got_b] == [{"t": n} for n in range(1, 5)]
        assert [m.value["t"] for m in (await push.fetch("dave", 0)).messages] == [1]
    for task in (task_a, task_b):
        task.cancel()
    await asyncio.gather(task_a, task_b, return_exceptions=True)


async def test_push_all_result(cluster: SdkCluster) -> None:
    got, task = await listening(cluster, "erin")
    async with client(cluster) as push:
        result = await push.push_all([1, "two"], expire=600)
        assert isinstance(result, BroadcastResult) and (result.online, result.failed_comets) == (1, [])
        assert (await push.push_all(b'{"raw" : true}', expire=0)).mid > result.mid
        await eventually(lambda: len(got) == 2)
        assert [m.raw for m in got] == [b'[1,"two"]', b'{"raw" : true}'] and {m.gid for m in got} == {1}
        assert [m.mid for m in (await push.fetch("anyone", 0, pmid=0)).public] == [result.mid]   # expire 0: not stored
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)


async def test_errors_by_ret_code(make_cluster: Any) -> None:
    cluster = await make_cluster(admin_token="t" * 32)
    async with client(cluster) as push:
        with pytest.raises(NoNodeError) as unknown:
            await push.push_alias("nobody@x", {"t": 1}, expire=600)
        assert unknown.value.ret == 1001 and "alias" in unknown.value.message
        remote: list[Any] = [
            push.set_tags("k", ["bad tag"]), push.set_tags("k", ["a,b"]), push.set_alias("k", "x" * 65),
            push.push_tags([["ok", "bad tag"]], {}, 600), push.tag_keys([["a"]], after="\x01"),
            push.push_all(b"not json", 600), push.push_alias("bad alias", {}, 600), push.key_info("x" * 200)]
        for call in remote:
            with pytest.raises(BadParameterError) as caught:
                await call
            assert (caught.value.ret, caught.value.status) == (65534, 200)
        not_a_str: Any = 7
        local: list[Any] = [
            lambda: push.set_tags("k", "beta"), lambda: push.set_alias("k", not_a_str),
            lambda: push.tag_keys([["a"]], count=0),
            lambda: push.tag_keys([]), lambda: push.push_tags([["a"]] * 17, {}, 600), lambda: push.push_all({}, -1),
            lambda: push.push_alias("", {}, 600), lambda: push.alias_key(""),
            lambda: push.push_tags([["a"]], {}, 600, timeout=1.0), lambda: push.push_all(float("nan"), 600)]
        for make in local:
            with pytest.raises(BadParameterError) as before:
                await make()
            assert before.value.status == 0
    async with PushClient(cluster.admin) as anonymous:
        with pytest.raises(AuthError):
            await anonymous.key_info("k")
        with pytest.raises(AuthError):
            await anonymous.push_all({}, 600)
