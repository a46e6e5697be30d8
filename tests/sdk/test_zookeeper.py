"""The SDKs against a cluster of real processes with ZooKeeper: the active comet of a name is SIGKILLed while a
PushClient loop pushes; TCP and WebSocket Subscribers move to the standby on their own and end with every
acknowledged message exactly once, in order.

ZooKeeper, Redis, the message node and both comets are real servers / processes (``python -m ...``); the web
node runs in the test's loop (as in tests/integration/test_failover.py).
"""
from __future__ import annotations

import asyncio
import dataclasses
from pathlib import Path
from typing import AsyncIterator

import pytest

from comet.config import CometConfig
from comet.subscriber import Subscriber
from comet.subscriber_api import Message, ServerError
from comet.subscriber_logic import ReconnectPolicy
from tests.helpers import eventually
from tests.sdk.conftest import collect
from tests.sdk.zkstack import KEY, ZkCluster, answers, serves
from web.push_client import NoNodeError, PushClient

pytestmark = [pytest.mark.zookeeper, pytest.mark.redis, pytest.mark.integration]

if "zookeeper" not in {f.name for f in dataclasses.fields(CometConfig)}:
    pytest.skip("the comet role has no cluster mode", allow_module_level=True)


@pytest.fixture
async def zk_cluster(redis_url: str, zk_hosts: str, tmp_path: Path) -> AsyncIterator[ZkCluster]:
    cluster = ZkCluster(redis_url, zk_hosts, tmp_path)
    try:
        yield cluster
    finally:
        await cluster.close()


async def test_subscribers_follow_a_sigkilled_comet_to_its_standby(zk_cluster: ZkCluster) -> None:
    zk_cluster.start_message()
    active, active_tcp = zk_cluster.start_comet("comet-a")
    await zk_cluster.start_web()
    push = PushClient(zk_cluster.admin, public_url=zk_cluster.public, timeout=5)
    subscribers: list[Subscriber] = []
    try:
        await eventually(lambda: serves(push, active_tcp), timeout=30)
        _standby, standby_tcp = zk_cluster.start_comet("comet-b")
        await eventually(lambda: answers(standby_tcp, b"-n\r\n"), timeout=30)   # up, behind the active one

        policy = ReconnectPolicy(initial=0.05, maximum=0.3)
        subscribers = [Subscriber(zk_cluster.public, KEY, proto=proto, reconnect=policy) for proto in ("tcp", "ws")]
        received: list[list[Message]] = [[], []]
        readers = [asyncio.create_task(collect(sub, got)) for sub, got in zip(subscribers, received)]
        for subscriber in subscribers:
            await asyncio.wait_for(subscriber.wait_live(), 10)

        acknowledged: list[int] = []
        failures: list[str] = []
        stop = asyncio.Event()

        async def push_loop() -> None:
            n = 0
            while not stop.is_set():
                n += 1
                try:
                    acknowledged.append((await push.push_private(KEY, {"n": n}, expire=600)).mid)
                except (ServerError, NoNodeError) as exc:     # the failover gap: a clear error, never a hang
                    failures.append(type(exc).__name__)
                await asyncio.sleep(0.01)

        loop = asyncio.create_task(push_loop())
        await eventually(lambda: len(acknowledged) >= 20, timeout=10)
        await asyncio.to_thread(active.kill)
        killed_at = len(acknowledged)
        await eventually(lambda: len(acknowledged) >= killed_at + 20, timeout=30)
        stop.set()
        await loop

        for subscriber, got in zip(subscribers, received):
            try:
                await eventually(lambda: len(got) >= len(acknowledged), timeout=15)
            except AssertionError:
                raise AssertionError(f"{subscriber.proto}: {len(got)} of {len(acknowledged)} delivered, state "
                                     f"{subscriber.state}, {subscriber.stats}") from None
        await asyncio.sleep(0.2)                               # nothing else may arrive
        for subscriber, got in zip(subscribers, received):
            assert [m.mid for m in got] == acknowledged, f"{subscriber.proto}: lost, duplicated or reordered"
            assert subscriber.stats.sessions >= 2 and subscriber.last_mid == acknowledged[-1]
        assert await push.server_for(KEY) == standby_tcp
        assert set(failures) <= {"ServerError", "NoNodeError"}
        for subscriber, reader in zip(subscribers, readers):
            await subscriber.close()
            await asyncio.wait_for(reader, 5)
    finally:
        for subscriber in subscribers:
            await subscriber.close()
        await push.close()
