"""The issue's test: Subscribers against a real local cluster (ZooKeeper, a Redis with an AOF, a message node and two
comets of one name as processes, the web node in the test's loop) survive a comet failover AND a Redis restart while
a PushClient loop pushes private messages (and now and then a broadcast), and end with every acknowledged message
exactly once, in mid order.

1. the active comet is SIGKILLed: the standby takes the name, the subscribers move to it on their own;
2. redis-server is SIGKILLed and started again on the same port with its AOF (``appendfsync always``: every
   acknowledged write is on disk before the answer): pushes fail with a clear error meanwhile, then work again.

A push that failed (65535, or no comet during the failover gap) may be missing, and one whose answer was lost
may be there; nothing may come twice, and private mids come strictly ascending.
"""
from __future__ import annotations

import asyncio
import dataclasses
from pathlib import Path
from typing import AsyncIterator

import pytest

from comet.config import CometConfig
from comet.subscriber import Subscriber
from comet.subscriber_api import GID_PUBLIC, Message, PushClusterError
from comet.subscriber_logic import ReconnectPolicy
from tests.chaos import conftest as chaos_fixtures
from tests.chaos.cluster import redis_ready
from tests.conftest import RedisServer
from tests.helpers import eventually
from tests.sdk.conftest import collect
from tests.sdk.zkstack import KEY, ZkCluster, answers, serves
from web.push_client import PushClient

pytestmark = [pytest.mark.zookeeper, pytest.mark.redis, pytest.mark.integration]

if "zookeeper" not in {f.name for f in dataclasses.fields(CometConfig)}:
    pytest.skip("the comet role has no cluster mode", allow_module_level=True)

aof_redis = chaos_fixtures.aof_redis   # the fault tests' redis-server that persists every write to its AOF

STEP = 20          # acknowledged pushes per phase
BROADCAST_EVERY = 7


@pytest.fixture
async def stack(aof_redis: RedisServer, zk_hosts: str, tmp_path: Path) -> AsyncIterator[ZkCluster]:
    cluster = ZkCluster(aof_redis.url, zk_hosts, tmp_path)
    try:
        yield cluster
    finally:
        await cluster.close()


class PushLoop:
    """Private pushes to KEY every 10 ms and a broadcast every BROADCAST_EVERY-th; what was acknowledged."""

    def __init__(self, push: PushClient) -> None:
        self.push = push
        self.private: list[int] = []         # mids of private pushes answered ret 0
        self.public: list[int] = []          # public mids of broadcasts that every comet took
        self.failures: list[str] = []
        self.stop = asyncio.Event()

    async def run(self) -> None:
        n = 0
        while not self.stop.is_set():
            n += 1
            try:
                if n % BROADCAST_EVERY == 0:
                    result = await self.push.push_all({"b": n}, expire=600)
                    if not result.failed_comets:   # a comet that failed: its clients fetch it on their next catch-up
                        self.public.append(result.mid)
                else:
                    self.private.append((await self.push.push_private(KEY, {"n": n}, expire=600)).mid)
            except PushClusterError as exc:   # the failover gap, Redis down: a clear error, never a hang
                self.failures.append(type(exc).__name__)
            await asyncio.sleep(0.01)

    async def until(self, count: int, timeout: float = 30) -> None:
        await eventually(lambda: len(self.private) >= count, timeout=timeout)


async def test_subscribers_survive_a_comet_failover_and_a_redis_restart(stack: ZkCluster,
                                                                         aof_redis: RedisServer) -> None:
    stack.start_message()
    active, active_tcp = stack.start_comet("comet-a")
    await stack.start_web()
    push = PushClient(stack.admin, public_url=stack.public, timeout=5)
    policy = ReconnectPolicy(initial=0.05, maximum=0.3)
    subscribers = [Subscriber(stack.public, KEY, proto=proto, reconnect=policy) for proto in ("tcp", "ws")]
    received: list[list[Message]] = [[], []]
    readers = [asyncio.create_task(collect(sub, got)) for sub, got in zip(subscribers, received)]
    pushes = PushLoop(push)
    loop: asyncio.Task[None] | None = None
    try:
        await eventually(lambda: serves(push, active_tcp), timeout=30)
        _standby, standby_tcp = stack.start_comet("comet-b")
        await eventually(lambda: answers(standby_tcp, b"-n\r\n"), timeout=30)
        for subscriber in subscribers:
            await asyncio.wait_for(subscriber.wait_live(), 10)
        loop = asyncio.create_task(pushes.run())

        await pushes.until(STEP)
        await asyncio.to_thread(active.kill)                               # 1. comet failover
        await pushes.until(len(pushes.private) + STEP)
        assert await push.server_for(KEY) == standby_tcp
        await eventually(lambda: all(sub.state == "live" and sub.stats.sessions >= 2 for sub in subscribers), 15)

        failed_before = len(pushes.failures)
        sessions = [subscriber.stats.sessions for subscriber in subscribers]
        await asyncio.to_thread(aof_redis.kill)                            # 2. Redis restart
        await eventually(lambda: len(pushes.failures) >= failed_before + 3, timeout=15)
        acked_while_down = len(pushes.private)
        await asyncio.to_thread(aof_redis.start)
        await eventually(lambda: redis_ready(aof_redis.url), timeout=20)
        await pushes.until(acked_while_down + STEP)
        assert [subscriber.stats.sessions for subscriber in subscribers] == sessions, "Redis cost a connection"
        pushes.stop.set()
        await loop

        for subscriber, got in zip(subscribers, received):
            def complete(got: list[Message] = got) -> bool:
                return set(pushes.private) <= {m.mid for m in got if m.gid != GID_PUBLIC}
            try:
                await eventually(complete, timeout=15)
            except AssertionError:
                raise AssertionError(f"{subscriber.proto}: state {subscriber.state}, {subscriber.stats}") from None
        await asyncio.sleep(0.3)                                           # nothing else may arrive
    finally:
        pushes.stop.set()
        if loop is not None:
            await asyncio.gather(loop, return_exceptions=True)
        for subscriber in subscribers:
            await subscriber.close()
        await asyncio.gather(*readers, return_exceptions=True)
        await push.close()

    for subscriber, got in zip(subscribers, received):
        private = [m.mid for m in got if m.gid != GID_PUBLIC]
        public = [m.mid for m in got if m.gid == GID_PUBLIC]
        assert private == sorted(set(private)), f"{subscriber.proto}: duplicated or out of order"
        extra = set(private) - set(pushes.private)       # pushes whose answer was lost but which were stored
        assert len(extra) <= len(pushes.failures), f"{subscriber.proto}: {len(extra)} unexplained messages"
        assert len(public) == len(set(public)), f"{subscriber.proto}: a broadcast came twice"
        assert set(pushes.public) <= set(public), f"{subscriber.proto}: an acknowledged broadcast is missing"
        assert subscriber.stats.sessions >= 2 and subscriber.last_mid == private[-1]
    assert pushes.failures and set(pushes.failures) <= {"ServerError", "NoNodeError", "RequestTimeout"}
    assert len(pushes.private) >= 3 * STEP
