"""``pushcluster push --all / --tags / --alias / --wait`` and ``pushcluster listen --pmid / --no-ack`` as real
processes against an in-process cluster."""
from __future__ import annotations

import asyncio
import json
import signal

import pytest

from tests.helpers import eventually
from tests.sdk.conftest import SdkCluster
from tests.sdk.test_cli import LISTEN, PUSH, run, spawn
from web.push_client import PushClient

pytestmark = [pytest.mark.redis, pytest.mark.integration]


async def test_push_all_and_listen_with_pmid(cluster: SdkCluster) -> None:
    code, out, err = await run(PUSH, "--all", '{"to": "all"}', "--admin", cluster.admin)
    assert code == 0, err
    first = json.loads(out)
    assert set(first) == {"mid", "online", "fc"} and first["fc"] == []
    code, out, err = await run(PUSH, "--all", '{"to": "all", "n": 2}', "--admin", cluster.admin)
    second = json.loads(out)
    process = await spawn(LISTEN, "alice", "--web", cluster.public, "--pmid", str(first["mid"]))
    try:
        assert process.stdout is not None
        line = json.loads(await asyncio.wait_for(process.stdout.readline(), 10))
        assert line == {"mid": second["mid"], "gid": 1, "msg": {"to": "all", "n": 2}}
        process.send_signal(signal.SIGINT)
        assert await asyncio.wait_for(process.wait(), 10) == 0
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()


async def test_listen_acks_and_push_waits_for_it(cluster: SdkCluster) -> None:
    process = await spawn(LISTEN, "bob", "--web", cluster.public, "--pmid", "none")
    try:
        assert process.stdout is not None
        await eventually(lambda: cluster.comet.table.count("bob") == 1, timeout=10)
        code, out, err = await run(PUSH, "bob", "[1]", "--admin", cluster.admin, "--wait", "acked", "--timeout", "5")
        assert code == 0, err
        result = json.loads(out)
        assert result["outcome"] == "acked" and result["online"] == 1
        line = json.loads(await asyncio.wait_for(process.stdout.readline(), 10))
        assert line == {"mid": result["mid"], "msg": [1]}
        process.send_signal(signal.SIGTERM)
        assert await asyncio.wait_for(process.wait(), 10) == 0
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()
    code, out, err = await run(PUSH, "nobody", "[2]", "--admin", cluster.admin, "--wait", "written")
    assert code == 0 and json.loads(out)["outcome"] == "offline", err


async def test_push_to_tags_and_alias(cluster: SdkCluster) -> None:
    async with PushClient(cluster.admin) as push:
        await push.set_tags("carol", ["beta"])
        await push.set_alias("carol", "carol@example.com")
    code, out, err = await run(PUSH, "--tags", '[["beta"]]', '{"n": 1}', "--admin", cluster.admin)
    assert code == 0, err
    assert json.loads(out) == {"keys": 1, "online": 0, "fk": []}
    code, out, err = await run(PUSH, "--alias", "carol@example.com", '{"n": 2}', "--admin", cluster.admin)
    assert code == 0, err
    result = json.loads(out)
    assert result["key"] == "carol" and result["online"] == 0
    code, out, err = await run(PUSH, "--alias", "nobody@example.com", '{"n": 3}', "--admin", cluster.admin)
    assert (code, out) == (1, "") and "NoNodeError" in err


async def test_push_usage_errors_exit_2() -> None:
    for args in (("--all", "k", "{}"), ("k",), ("--all", "{}", "--wait", "acked"), ("--tags", "[[", "{}"),
                 ("--all", "--alias", "a", "{}"), ("k", "{}", "--wait", "read")):
        code, _out, err = await run(PUSH, *args)
        assert code == 2, (args, err)
    assert (await run(LISTEN, "k", "--pmid", "x"))[0] == 2
