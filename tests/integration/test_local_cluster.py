"""``pushcluster cluster`` as a user runs it: ``python pushcluster.py cluster`` as a real process, with real
ZooKeeper, real Redis and every role as a process of its own, on a free block of loopback ports (``--port-base``).

One run of the whole story (each start of the cluster costs seconds): the keys spread over the comets ``a`` and
``b``; a raw TCP subscriber at the address ``/1/server/get`` gave receives a push made through the admin API;
SIGKILL of the active ``a`` comet moves its keys to the standby; SIGTERM stops everything (exit 0, no child left);
a restart on the same data dir still has the message (Redis AOF); SIGKILL of the supervisor takes every child with
it. Plus the paths that never start anything: a missing program and a bad config dir (exit 2).
"""
from __future__ import annotations

import asyncio
import json
import os
import pathlib
import random
import re
import signal
import sys
import time
from typing import Any

import httpx
import pytest

from tests.helpers import eventually
from tests.integration.conftest import TcpSubscriber
from thirdparty.local_cluster_plan import load_plan, missing_programs
from thirdparty.local_cluster_state import busy_binds

pytestmark = [pytest.mark.zookeeper, pytest.mark.redis, pytest.mark.integration]

ROOT = pathlib.Path(__file__).resolve().parents[2]
CONF = ROOT / "conf" / "cluster"
ROW = re.compile(r"^  (\S+) +(\d+)  (.*)$")
START_TIMEOUT = 60.0


def alive(pid: int) -> bool:
    """True while ``pid`` runs (a zombie waiting for its reaper counts as dead)."""
    try:
        stat = pathlib.Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


def free_port_base(scratch: pathlib.Path) -> int:
    """A --port-base whose every port of the shipped configs is free (below the kernel's ephemeral range)."""
    for _ in range(100):
        base = random.randrange(20000, 31000)
        if not busy_binds(load_plan(CONF, scratch, base)):
            return base
    pytest.skip("no free block of loopback ports")


class Supervisor:
    """One ``python pushcluster.py cluster`` process: its summary rows (name -> (pid, text)) and its log."""

    def __init__(self, proc: asyncio.subprocess.Process, log_path: pathlib.Path) -> None:
        self.proc, self.log_path = proc, log_path
        self.rows: dict[str, tuple[int, str]] = {}
        self.summary = ""

    @classmethod
    async def start(cls, data_dir: pathlib.Path, port_base: int, log_path: pathlib.Path) -> Supervisor:
        with open(log_path, "ab") as log:
            proc = await asyncio.create_subprocess_exec(
                sys.executable, "pushcluster.py", "cluster", "--data-dir", str(data_dir), "--port-base",
                str(port_base), cwd=ROOT, stdin=asyncio.subprocess.DEVNULL, stdout=asyncio.subprocess.PIPE,
                stderr=log)
        supervisor = cls(proc, log_path)
        await supervisor._read_summary()
        return supervisor

    async def _read_summary(self) -> None:
        assert self.proc.stdout is not None
        deadline = time.monotonic() + START_TIMEOUT
        lines: list[str] = []
        while not any("failover:" in line for line in lines):
            line = await asyncio.wait_for(self.proc.stdout.readline(), max(0.1, deadline - time.monotonic()))
            assert line, f"the cluster did not start (exit {await self.proc.wait()}):\n{self.log()[-4000:]}"
            lines.append(line.decode())
        self.summary = "".join(lines)
        for line in lines:
            match = ROW.match(line.rstrip("\n"))
            if match and match.group(1) != "process":
                self.rows[match.group(1)] = (int(match.group(2)), match.group(3))

    def pid(self, name: str) -> int:
        return self.rows[name][0]

    def address(self, name: str, label: str) -> str:
        """The address after ``label`` ("tcp", "public", "admin", ...) in a process's summary row."""
        found = re.search(rf"\b{label} (\S+)", self.rows[name][1])
        assert found, self.rows[name]
        return found.group(1)

    def children_alive(self) -> list[str]:
        return [name for name, (pid, _text) in self.rows.items() if alive(pid)]

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    async def stop(self, signum: int) -> int:
        """Send ``signum``, wait for the exit, read the rest of stdout; the exit code."""
        self.proc.send_signal(signum)
        code = await asyncio.wait_for(self.proc.wait(), 60)
        assert self.proc.stdout is not None
        await self.proc.stdout.read()
        return code

    async def close(self) -> None:
        if self.proc.returncode is None:
            await self.stop(signal.SIGKILL)
        for name in self.children_alive():
            os.kill(self.rows[name][0], signal.SIGKILL)


async def server_of(http: httpx.AsyncClient, public: str, key: str) -> Any:
    reply = (await http.get(f"http://{public}/1/server/get", params={"k": key, "p": 2})).json()
    return reply["data"]["server"] if reply["ret"] == 0 else reply["ret"]


@pytest.mark.skipif(bool(missing_programs()), reason="; ".join(missing_programs()))
async def test_a_local_cluster_routes_delivers_fails_over_restarts_and_stops_clean(tmp_path):
    data_dir, base = tmp_path / "data", free_port_base(tmp_path / "scratch")
    supervisor = await Supervisor.start(data_dir, base, tmp_path / "cluster.log")
    async with httpx.AsyncClient(timeout=10) as http:
        try:
            public, admin = supervisor.address("web", "public"), supervisor.address("web", "admin")
            a_tcp, b_tcp = supervisor.address("comet-a", "tcp"), supervisor.address("comet-b", "tcp")
            standby_tcp = supervisor.address("comet-a-standby", "tcp")
            assert "comet a active" in supervisor.rows["comet-a"][1]
            assert "comet a standby" in supervisor.rows["comet-a-standby"][1]

            servers = {key: await server_of(http, public, key) for key in (f"user{i}" for i in range(40))}
            assert set(servers.values()) == {a_tcp, b_tcp}
            key = next(key for key, server in servers.items() if server == a_tcp)

            host, port = servers[key].rsplit(":", 1)
            subscriber = await TcpSubscriber.connect((host, int(port)), key)
            try:
                reply = (await http.post(f"http://{admin}/push/private", params={"key": key, "expire": 600},
                                         content=json.dumps({"hello": "cluster"}))).json()
                assert reply["ret"] == 0 and reply["data"]["online"] == 1, (reply, supervisor.log()[-6000:])
                mid = reply["data"]["mid"]
                frame = json.loads(await subscriber.frame())
                assert (frame["mid"], frame["msg"]) == (mid, {"hello": "cluster"})

                os.kill(supervisor.pid("comet-a"), signal.SIGKILL)
                assert await asyncio.wait_for(subscriber.reader.read(), 10) == b""
            finally:
                await subscriber.close()
            await eventually(lambda: _is(server_of(http, public, key), standby_tcp), timeout=15)
            await eventually(lambda: "comet a: comet-a-standby is active now (was comet-a)" in supervisor.log())
            assert f"comet-a pid={supervisor.pid('comet-a')}: killed by SIGKILL unexpectedly" in supervisor.log()
            assert "comet-a-standby |" in supervisor.log()   # the children's lines, prefixed

            assert await supervisor.stop(signal.SIGTERM) == 0
            assert supervisor.children_alive() == []
            log = supervisor.log()
            stopped = [log.index(f"{name} pid={supervisor.pid(name)}: stopped") for name in
                       ("web", "comet-b", "message-1", "message-2", "redis-r1", "zookeeper")]
            assert stopped == sorted(stopped), "not stopped in reverse order"

            supervisor = await Supervisor.start(data_dir, base, tmp_path / "restart.log")
            reply = (await http.get(f"http://{public}/1/msg/get", params={"k": key, "m": 0})).json()
            assert [message["mid"] for message in reply["data"]["msgs"]] == [mid], reply   # kept in Redis' AOF

            await supervisor.stop(signal.SIGKILL)   # no chance to stop anything: PR_SET_PDEATHSIG does
            await eventually(lambda: supervisor.children_alive() == [], timeout=30)
        finally:
            await supervisor.close()


async def _is(value: Any, expected: str) -> bool:
    return bool(await value == expected)


async def run_command(*args: str, env: dict[str, str] | None = None) -> tuple[int, str]:
    proc = await asyncio.create_subprocess_exec(sys.executable, "pushcluster.py", "cluster", *args, cwd=ROOT,
                                                env=env, stdout=asyncio.subprocess.PIPE,
                                                stderr=asyncio.subprocess.STDOUT)
    output, _ = await asyncio.wait_for(proc.communicate(), 60)
    return await proc.wait(), output.decode()


async def test_without_redis_or_zookeeper_it_says_what_to_install(tmp_path):
    (tmp_path / "bin").mkdir()
    code, output = await run_command("--data-dir", str(tmp_path / "data"),
                                     env={**os.environ, "PATH": str(tmp_path / "bin")})
    assert code == 2
    assert "redis-server is not on PATH" in output and "java is not installed" in output
    assert "apt-get install -y redis-server zookeeper" in output
    assert not (tmp_path / "data").exists()


async def test_a_bad_conf_dir_exits_2_naming_the_file(tmp_path):
    code, output = await run_command("--conf-dir", str(tmp_path), "--data-dir", str(tmp_path / "data"))
    assert (code, "no cluster.conf" in output) == (2, True), output

