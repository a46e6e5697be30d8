"""The graceful hand-over of a comet name (README "What fails over": the active comet stopped with SIGTERM
deregisters first, the web nodes move to the standby, then it finishes its running pushes): a push that the
leaving comet is running when the web node moves on must still get its answer.

Made deterministic: the message node is frozen (SIGSTOP) while a push is under way on the active comet, so that
push is still running when the comet is SIGTERMed and the web node switches to the standby; the message node is
let go (SIGCONT) once the web node routes the key to the standby, well within the leaving comet's grace.
The chaos run (test_chaos.py) sees the same thing by chance: a few 65535 per SIGTERM of an active comet, of
pushes that were stored and delivered.
"""
from __future__ import annotations

import asyncio
import os
import signal
from pathlib import Path
from typing import Any, AsyncIterator

import pytest

from tests.chaos.cluster import ChaosCluster, keys_for, start_cluster, wait_until
from tests.conftest import RedisServer
from tests.processes import exit_code, pid_of, send_signal

pytestmark = [pytest.mark.chaos, pytest.mark.zookeeper, pytest.mark.redis, pytest.mark.integration]



@pytest.fixture
async def cluster(aof_redis: RedisServer, zk_hosts: str, tmp_path: Path) -> AsyncIterator[ChaosCluster]:
    cluster = ChaosCluster(aof_redis, zk_hosts, tmp_path)
    try:
        yield cluster
    finally:
        for message in cluster.messages.values():
            if message.process.proc is not None and message.process.proc.poll() is None:
                os.kill(pid_of(message.process), signal.SIGCONT)   # still running: it exists
        await cluster.close()


async def test_a_push_running_on_the_leaving_comet_is_answered(cluster: ChaosCluster, record_property: Any) -> None:
    key = keys_for(["a"], 1)["a"][0]
    await start_cluster(cluster, {"a": 2}, [key], messages=1)
    active, standby = cluster.comets["comet-a1"], cluster.comets["comet-a2"]
    assert await cluster.server(key) == active.tcp
    message = pid_of(cluster.messages["message-1"].process)
    os.kill(message, signal.SIGSTOP)
    try:
        push = asyncio.ensure_future(cluster.push(key, {"k": key, "n": 1, "e": 600}, 600))
        await asyncio.sleep(0.3)
        assert not push.done(), "the push should be waiting for the frozen message node"
        send_signal(active.process, signal.SIGTERM)
        await wait_until(lambda: _routes_to(cluster, key, standby.tcp), 10.0, "the web node moved to the standby")
    finally:
        os.kill(message, signal.SIGCONT)
    ret, mid = await push
    code = await asyncio.to_thread(exit_code, active.process, 20.0)
    stored = await cluster.stored(key)
    print(f"\npush running on the leaving comet: ret {ret}, mid {mid}; stored {stored}; comet exit code {code}")
    record_property("ret", ret)
    assert code == 0
    assert ret == 0 and [m for m, _msg in stored] == [mid], (ret, mid, stored)


async def _routes_to(cluster: ChaosCluster, key: str, address: str) -> bool:
    return bool(await cluster.server(key) == address)
