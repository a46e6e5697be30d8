"""A message node with two Redis shards loses one: only the keys on that shard fail, fast and with ret 65535,
and the shard comes back by itself when its redis-server does.

Everything is real: two redis-server processes (shard r1 is the session's server, shard r2 one started here with
``appendonly yes`` and ``appendfsync always`` so that a SIGKILL loses nothing acknowledged), and the message,
comet and web nodes as ``python -m <role>`` processes in static mode, on loopback. Keys are sorted by shard with the
message node's own mapping (``RedisStorage.shard_of``), and the test checks in Redis that it agrees with where the
node stored them.
"""
from __future__ import annotations

import asyncio
import json
import shutil
import time
from pathlib import Path
from typing import Any, AsyncIterator, Awaitable, Iterator, TypeVar

import httpx
import pytest
import redis.asyncio
import redis.exceptions

from message.redis_storage import MSG_KEY, RedisStorage
from tests.conftest import RedisServer
from tests.helpers import eventually, free_port, wait_port
from tests.integration.conftest import TcpSubscriber, WebApi
from tests.processes import RoleProcess, tracebacks

pytestmark = [pytest.mark.redis, pytest.mark.integration]

T = TypeVar("T")

DEADLINE = 5.0         # seconds: an upper bound for calls to a dead shard to come back (a hang guard, not a timing)
INTERNAL = 65535       # ret: a node or Redis is unreachable (docs/openapi.yaml, web/ret.py)
PERSISTENT = ("--appendonly", "yes", "--appendfsync", "always")
KEYS_PER_SHARD = 3
ROUNDS = 3             # bursts of concurrent calls on each side of an outage


@pytest.fixture
def shard2() -> Iterator[RedisServer]:
    """A second redis-server (the message node's shard r2), persisting every write to its AOF before answering."""
    if shutil.which("redis-server") is None:
        pytest.skip("redis-server is not installed (bash .ci/run installs it)")
    server = RedisServer(PERSISTENT)
    server.start()
    try:
        yield server
    finally:
        server.stop()


async def keys_by_shard(shards: dict[str, str], per_shard: int) -> dict[str, list[str]]:
    """``per_shard`` keys for each shard name, as the message node's ring places them."""
    storage = RedisStorage(shards)   # builds its pools lazily: nothing is connected here
    try:
        found: dict[str, list[str]] = {name: [] for name in shards}
        for n in range(10_000):
            key = f"user{n}"
            bucket = found[storage.shard_of(key)]
            if len(bucket) < per_shard:
                bucket.append(key)
            if all(len(bucket) == per_shard for bucket in found.values()):
                return found
    finally:
        await storage.close()
    raise AssertionError(f"the ring left a shard without keys: {found}")


async def stored_on(url: str, keys: list[str]) -> list[str]:
    """The keys among ``keys`` that have a message set on the Redis server at ``url``."""
    client = redis.asyncio.Redis.from_url(url)
    try:
        return [key for key in keys if await client.exists(MSG_KEY % key)]
    finally:
        await client.aclose()


async def bounded(call: Awaitable[T]) -> T:
    """``call``'s result; fails the test (instead of hanging) if it has not come back within DEADLINE."""
    try:
        return await asyncio.wait_for(call, DEADLINE)
    except TimeoutError:
        raise AssertionError(f"no answer within {DEADLINE}s: the call hangs on the dead shard") from None


class ShardedStack:
    """Message (shards r1 and r2), comet and web nodes as processes in static mode, and a client of the web API."""

    def __init__(self, shards: dict[str, str], directory: Path) -> None:
        port = {name: free_port() for name in ("msg", "comet_rpc", "tcp", "ws", "public", "admin")}
        msg_rpc, comet_rpc = f"127.0.0.1:{port['msg']}", f"127.0.0.1:{port['comet_rpc']}"
        tcp, ws = f"127.0.0.1:{port['tcp']}", f"127.0.0.1:{port['ws']}"
        self.tcp = ("127.0.0.1", port["tcp"])
        self.ports = [port["msg"], port["comet_rpc"], port["tcp"], port["public"], port["admin"]]
        self.processes = [
            RoleProcess("message", "message", {"rpc": {"bind": msg_rpc},
                                               "storage": {"redis": shards, "max_per_key": 1000}}, directory),
            RoleProcess("comet", "comet", {"node": {"name": "node1"},
                                           "bind": {"tcp": [tcp], "ws": [ws], "rpc": comet_rpc, "stat": ""},
                                           "message": {"rpc": msg_rpc}}, directory),
            RoleProcess("web", "web", {"public": {"bind": [f"127.0.0.1:{port['public']}"]},
                                       "admin": {"bind": [f"127.0.0.1:{port['admin']}"]},
                                       "comets": {"node1": {"rpc": [comet_rpc], "tcp": [tcp], "ws": [ws]}},
                                       "message": {"rpc": msg_rpc}}, directory)]
        self.http = httpx.AsyncClient(timeout=2 * DEADLINE)
        self.api = WebApi(f"http://127.0.0.1:{port['public']}", f"http://127.0.0.1:{port['admin']}", self.http)

    async def start(self) -> None:
        for process in self.processes:
            process.start()
        for port in self.ports:
            await asyncio.to_thread(wait_port, "127.0.0.1", port, 20.0)

    async def close(self) -> None:
        await self.http.aclose()
        for process in reversed(self.processes):
            process.close()

    def message_log(self) -> str:
        return self.processes[0].log()


@pytest.fixture
async def stack(redis_url: str, shard2: RedisServer, tmp_path: Path) -> AsyncIterator[ShardedStack]:
    stack = ShardedStack({"r1": redis_url, "r2": shard2.url}, tmp_path)
    try:
        await stack.start()
        yield stack
    finally:
        await stack.close()


@pytest.fixture
async def keys(redis_url: str, shard2: RedisServer) -> dict[str, list[str]]:
    return await keys_by_shard({"r1": redis_url, "r2": shard2.url}, KEYS_PER_SHARD)


async def push_ok(api: WebApi, key: str, body: Any) -> int:
    reply = await api.push(key, body)
    assert reply["ret"] == 0, (key, reply)
    mid: int = reply["data"]["mid"]
    return mid


async def next_mid(subscriber: TcpSubscriber) -> int:
    mid: int = json.loads(await subscriber.frame())["mid"]
    return mid


async def test_a_dead_shard_fails_only_its_own_keys(stack: ShardedStack, keys: dict[str, list[str]],
                                                     shard2: RedisServer, redis_url: str) -> None:
    api, alive, dead = stack.api, keys["r1"], keys["r2"]
    listeners = {key: await TcpSubscriber.connect(stack.tcp, key) for key in (alive[0], dead[0])}
    try:
        before = {key: await push_ok(api, key, {"key": key, "n": 0}) for key in alive + dead}
        for key, subscriber in listeners.items():
            assert await next_mid(subscriber) == before[key]
        # the test's shard mapping is the node's: each key's messages are on the server the ring names
        assert await stored_on(redis_url, alive + dead) == alive
        assert await stored_on(shard2.url, alive + dead) == dead

        await asyncio.to_thread(shard2.kill)

        replies = await bounded(asyncio.gather(*(api.push(key, {"key": key, "n": 1}) for key in alive + dead)))
        pushed = dict(zip(alive + dead, replies))
        assert {key: pushed[key]["ret"] for key in dead} == {key: INTERNAL for key in dead}
        assert all(pushed[key]["ret"] == 0 and pushed[key]["data"]["mid"] > before[key] for key in alive), pushed
        assert await next_mid(listeners[alive[0]]) == pushed[alive[0]]["data"]["mid"]

        fetched = await bounded(asyncio.gather(*(api.fetch(key) for key in alive + dead)))
        got = dict(zip(alive + dead, fetched))
        assert {key: got[key]["ret"] for key in dead} == {key: INTERNAL for key in dead}
        for key in alive:
            assert got[key]["ret"] == 0, got[key]
            assert [(m["mid"], m["msg"]) for m in got[key]["data"]["msgs"]] == [
                (before[key], {"key": key, "n": 0}), (pushed[key]["data"]["mid"], {"key": key, "n": 1})]

        mixed = [key for pair in zip(alive, dead) for key in pair]   # both shards, interleaved
        reply = await bounded(api.mprivate(mixed, {"n": 2}))
        assert reply["ret"] == 0 and reply["data"]["fk"] == dead, reply   # exactly the keys of r2, in order
        for key in alive:
            assert (await api.fetch_all(key))[-1][1] == {"n": 2}
        assert json.loads(await listeners[alive[0]].frame())["msg"] == {"n": 2}
    finally:
        for subscriber in listeners.values():
            await subscriber.close()
    log = stack.message_log()
    assert "shard r2" in log and "shard r1" not in log, "the message node's errors should name the dead shard"
    assert tracebacks(stack.processes) == {}


async def burst(api: WebApi, keys: list[str], n: int) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """Concurrently: push ``{"key": K, "n": n}`` to every key, and fetch every key four times. The replies of the
    pushes (in key order) and of the fetches. (Overlapping calls: a connection pool would use several connections.)"""
    pushes = [api.push(key, {"key": key, "n": n}) for key in keys]
    fetches = [api.fetch(key) for key in keys for _ in range(4)]
    replies = await asyncio.gather(*pushes, *fetches)
    return replies[:len(pushes)], replies[len(pushes):]


async def test_a_restarted_shard_recovers_by_itself_with_its_data(stack: ShardedStack, keys: dict[str, list[str]],
                                                                  shard2: RedisServer,
                                                                  record_property: Any) -> None:
    api, dead = stack.api, keys["r2"]
    subscriber = await TcpSubscriber.connect(stack.tcp, dead[0])
    try:
        stored: list[dict[str, int]] = []   # per round: {key: mid}
        for n in range(ROUNDS):
            pushed, fetched = await burst(api, dead, n)
            assert all(reply["ret"] == 0 for reply in pushed + fetched), (pushed, fetched)
            stored.append({key: reply["data"]["mid"] for key, reply in zip(dead, pushed)})
        assert [await next_mid(subscriber) for _ in stored] == [round_mids[dead[0]] for round_mids in stored]

        await asyncio.to_thread(shard2.kill)
        lost = await bounded(api.push(dead[0], {"key": dead[0], "n": "lost"}))
        assert lost["ret"] == INTERNAL, lost
        assert (await bounded(api.fetch(dead[0])))["ret"] == INTERNAL

        restarted_at = time.monotonic()
        await asyncio.to_thread(shard2.start)   # the same port and data directory (AOF)
        await eventually(lambda: redis_ready(shard2.url), timeout=10)   # has loaded its AOF, answers commands

        # Redis is back: from the very first call on, every call succeeds without restarting the message node,
        # concurrent ones too (none may use a connection opened before the kill: the server closed those)
        failed: list[dict[str, Any]] = []
        for n in range(ROUNDS, 2 * ROUNDS):
            pushed, fetched = await bounded(burst(api, dead, n))
            failed += [reply for reply in pushed + fetched if reply["ret"] != 0]
            stored.append({key: reply["data"]["mid"] for key, reply in zip(dead, pushed) if reply["ret"] == 0})
            if n == ROUNDS:   # from the restart of redis-server to the first burst served
                record_property("shard_recovery_seconds", round(time.monotonic() - restarted_at, 3))
        record_property("calls_failed_after_restart", len(failed))
        assert not failed, f"{len(failed)} of {ROUNDS * 5 * len(dead)} calls failed once r2 was back: {failed[:3]}"

        # what was stored before the kill is still there (AOF), exactly once, followed by what came after
        for key in dead:
            assert await api.fetch_all(key) == [(round_mids[key], {"key": key, "n": n})
                                                for n, round_mids in enumerate(stored)]
        first = [round_mids[dead[0]] for round_mids in stored]
        assert first == sorted(set(first))
        # the subscriber got the new ones, and nothing for the push that failed
        assert [await next_mid(subscriber) for _ in range(ROUNDS)] == first[ROUNDS:]
    finally:
        await subscriber.close()
    assert tracebacks(stack.processes) == {}


async def redis_ready(url: str) -> bool:
    """True once the Redis server at ``url`` answers commands (not LOADING, not refusing)."""
    client = redis.asyncio.Redis.from_url(url)
    try:
        return bool(await client.ping())
    except (redis.exceptions.ConnectionError, redis.exceptions.BusyLoadingError):
        return False
    finally:
        await client.aclose()
