"""``pushcluster listen`` and ``pushcluster push`` (comet/subscriber_cli.py, web/push_cli.py) as real processes
against an in-process cluster (asyncio subprocesses, so that the cluster in this loop keeps serving)."""
from __future__ import annotations

import asyncio
import json
import os
import signal
import sys

import pytest

from tests.comet.tls_cert import make_cert
from tests.processes import ROOT
from tests.sdk.conftest import SdkCluster

pytestmark = [pytest.mark.redis, pytest.mark.integration]

LISTEN = "import sys; from comet.subscriber_cli import listen_main; sys.exit(listen_main(sys.argv[1:]))"
PUSH = "import sys; from web.push_cli import push_main; sys.exit(push_main(sys.argv[1:]))"


async def spawn(code: str, *args: str, stdin: bytes | None = None) -> asyncio.subprocess.Process:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    env.pop("PUSHCLUSTER_ADMIN_TOKEN", None)
    return await asyncio.create_subprocess_exec(
        sys.executable, "-c", code, *args, cwd=ROOT, env=env, stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE, stdin=asyncio.subprocess.PIPE if stdin is not None else None)


async def run(code: str, *args: str, stdin: bytes | None = None) -> tuple[int, str, str]:
    process = await spawn(code, *args, stdin=stdin)
    out, err = await asyncio.wait_for(process.communicate(stdin), 20)
    assert process.returncode is not None
    return process.returncode, out.decode(), err.decode()


@pytest.mark.parametrize("proto", ["tcp", "ws"])
async def test_listen_prints_stored_then_live_messages_and_exits_0_on_ctrl_c(cluster: SdkCluster,
                                                                               proto: str) -> None:
    skipped = await cluster.push_mid("alice", {"n": 0})
    stored = await cluster.push_mid("alice", {"n": 1, "text": "multi\nline"})
    process = await spawn(LISTEN, "alice", "--web", cluster.public, "--proto", proto, "--from-mid", str(skipped))
    try:
        assert process.stdout is not None
        first = json.loads(await asyncio.wait_for(process.stdout.readline(), 10))
        assert first == {"mid": stored, "msg": {"n": 1, "text": "multi\nline"}}
        live = await cluster.push_mid("alice", {"n": 2})
        second = await asyncio.wait_for(process.stdout.readline(), 10)
        assert second == b'{"mid":%d,"msg":{"n": 2}}\n' % live        # the pushed JSON as it was sent
        process.send_signal(signal.SIGINT)
        assert await asyncio.wait_for(process.wait(), 10) == 0
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()


async def test_listen_exits_1_when_the_key_is_refused(cluster: SdkCluster) -> None:
    code, out, err = await run(LISTEN, "bad\x01key", "--web", cluster.public)
    assert (code, out) == (1, "") and "refused" in err


async def test_listen_usage_errors_exit_2() -> None:
    assert (await run(LISTEN, "k", "--from-mid", "-1"))[0] == 2
    assert (await run(LISTEN, "k", "--web", "ftp://x"))[0] == 2


async def test_push_prints_the_result(cluster: SdkCluster) -> None:
    code, out, err = await run(PUSH, "bob", '{"title": "hi"}', "--admin", cluster.admin, "--expire", "60")
    assert code == 0, err
    result = json.loads(out)
    assert result["online"] == 0
    stored = (await cluster.http.get(f"{cluster.public}/1/msg/get", params={"k": "bob", "m": 0})).json()
    assert stored["data"]["msgs"] == [{"msg": {"title": "hi"}, "mid": result["mid"], "gid": 0}]
    code, out, err = await run(PUSH, "bob", "-", "--admin", cluster.admin, stdin=b'"from stdin"\n')
    assert code == 0 and json.loads(out)["mid"] > result["mid"], err


async def test_push_errors_exit_1_with_the_message(make_cluster) -> None:
    cluster = await make_cluster(admin_token="s" * 32)
    code, out, err = await run(PUSH, "bob", "hello", "--admin", cluster.admin)
    assert (code, out) == (1, "") and "not JSON" in err
    code, out, err = await run(PUSH, "bob", "{}", "--admin", cluster.admin)
    assert (code, out) == (1, "") and "AuthError" in err
    code, out, err = await run(PUSH, "bob", "{}", "--admin", cluster.admin, "--token", "s" * 32, "--expire", "-5")
    assert (code, out) == (1, "") and "BadParameterError" in err
    code, out, err = await run(PUSH, "bob", "{}", "--admin", cluster.admin, "--token", "s" * 32)
    assert code == 0 and "mid" in json.loads(out), err


async def test_listen_and_push_over_tls(make_cluster, tmp_path) -> None:
    cert = make_cert(tmp_path)
    cluster = await make_cluster(tls={"cert": cert.cert, "key": cert.key})
    process = await spawn(LISTEN, "carol", "--web", cluster.public, "--proto", "ws", "--tls", "--cafile", cert.cert)
    try:
        assert process.stdout is not None
        await asyncio.sleep(0.3)   # let it subscribe; the message is stored anyway
        code, out, err = await run(PUSH, "carol", "[1]", "--admin", cluster.admin, "--cafile", cert.cert)
        assert code == 0, err
        line = json.loads(await asyncio.wait_for(process.stdout.readline(), 10))
        assert line == {"mid": json.loads(out)["mid"], "msg": [1]}
        process.send_signal(signal.SIGTERM)
        assert await asyncio.wait_for(process.wait(), 10) == 0
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()
