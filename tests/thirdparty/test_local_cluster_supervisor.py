"""The local-cluster supervisor with real processes and servers: children that die with their parent, readiness
probes, busy ports, the data-dir lock, missing programs, following registrations in ZooKeeper, and LocalCluster
itself running small listener processes (output prefixes, a death reported once, reverse stop, SIGKILL after the
grace, a second signal, a role's config error)."""
from __future__ import annotations

import asyncio
import io
import json
import logging
import os
import pathlib
import signal
import socket
import subprocess
import sys
import time
from dataclasses import replace

import pytest
from kazoo.client import KazooClient

from tests.helpers import eventually, free_port
from thirdparty.local_cluster import ClusterError, LocalCluster, data_dir_lock, run
from thirdparty.local_cluster_config import ClusterConfig, RoleProcess, SupervisorConfig
from thirdparty.local_cluster_plan import (
    PROBE_ACCEPT, PROBE_REDIS, PROBE_ZOOKEEPER, Child, Plan, load_plan, missing_programs,
)
from thirdparty.local_cluster_state import ClusterState, busy_binds, describe_exit, probe
from thirdparty.zk_config import ZookeeperConfig

ROOT = pathlib.Path(__file__).resolve().parents[2]
CONF = ROOT / "conf" / "cluster"
SPAWN_SLEEPER = """
import subprocess, sys
from thirdparty.parent_death import pdeathsig_preexec
child = subprocess.Popen(["sleep", "60"], preexec_fn=pdeathsig_preexec() if sys.argv[1] == "yes" else None)
print(child.pid, flush=True)
sys.stdin.read()
"""


def alive(pid: int) -> bool:
    """True while ``pid`` runs (a zombie waiting for its reaper counts as dead)."""
    try:
        stat = pathlib.Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


@pytest.mark.parametrize("pdeathsig", [True, False])
def test_a_child_dies_with_its_parent_even_by_sigkill(pdeathsig):
    with subprocess.Popen([sys.executable, "-c", SPAWN_SLEEPER, "yes" if pdeathsig else "no"], cwd=ROOT,
                          stdin=subprocess.PIPE, stdout=subprocess.PIPE) as parent:
        assert parent.stdout is not None
        pid = int(parent.stdout.readline())
        try:
            assert alive(pid)
            parent.kill()
            parent.wait(10)
            deadline = time.monotonic() + (5.0 if pdeathsig else 0.5)   # the control only needs a moment
            while alive(pid) and time.monotonic() < deadline:
                time.sleep(0.02)
            assert alive(pid) is not pdeathsig   # without PR_SET_PDEATHSIG the orphan lives on
        finally:
            if alive(pid):
                os.kill(pid, signal.SIGKILL)


def test_describe_exit():
    assert describe_exit(0) == "exited with code 0"
    assert describe_exit(2) == "exited with code 2"
    assert describe_exit(-9) == "killed by SIGKILL"
    assert describe_exit(-15) == "killed by SIGTERM"


def test_busy_binds_names_the_process_and_address_in_use(tmp_path):
    plan = load_plan(CONF, tmp_path, port_base=23000 + free_port() % 7000)
    web_public = next(child for child in plan.children if child.name == "web").binds[0]
    host, port = web_public.rsplit(":", 1)
    with socket.socket() as holder:
        holder.bind((host, int(port)))
        holder.listen()
        assert ("web", web_public) in busy_binds(plan)


def test_one_data_dir_serves_one_supervisor_at_a_time(tmp_path):
    with data_dir_lock(tmp_path):
        with pytest.raises(ClusterError, match=f"in use by another pushcluster cluster \\(pid {os.getpid()}\\)") \
                as caught:
            with data_dir_lock(tmp_path):
                pass
        assert caught.value.code == 3
    with data_dir_lock(tmp_path):   # released
        pass


def test_missing_programs_name_the_debian_packages(tmp_path, monkeypatch):
    monkeypatch.setenv("PATH", str(tmp_path))
    missing = missing_programs()
    assert len(missing) == 2 and "redis-server" in missing[0] and "zookeeper" in missing[1]
    with pytest.raises(ClusterError, match="apt-get install -y redis-server zookeeper") as caught:
        run(CONF, tmp_path / "data", 17000, announce=print)
    assert caught.value.code == 2
    assert not (tmp_path / "data").exists()   # nothing was started or written


async def test_probes_ask_each_server_its_own_question(redis_server, zk_server):
    redis_port = int(redis_server.rsplit(":", 1)[1].split("/")[0])
    closed = free_port()
    assert await probe(Child("zk", "zookeeper", (), (zk_server.hosts,), PROBE_ZOOKEEPER))
    assert await probe(Child("r", "redis", (), (f"127.0.0.1:{redis_port}",), PROBE_REDIS))
    assert not await probe(Child("r", "redis", (), (zk_server.hosts,), PROBE_REDIS))     # accepts, but no PONG
    assert await probe(Child("w", "web", (), (f"127.0.0.1:{redis_port}", zk_server.hosts), PROBE_ACCEPT))
    assert not await probe(Child("w", "web", (), (f"127.0.0.1:{redis_port}", f"127.0.0.1:{closed}"),
                                 PROBE_ACCEPT))
    assert not await probe(Child("zk", "zookeeper", (), (f"127.0.0.1:{closed}",), PROBE_ZOOKEEPER))


@pytest.mark.zookeeper
async def test_cluster_state_follows_registrations_and_reports_a_takeover(zk_hosts, tmp_path, caplog):
    caplog.set_level(logging.INFO, logger="thirdparty.local_cluster")
    plan = replace(load_plan(CONF, tmp_path),
                   zookeeper=ZookeeperConfig(hosts=zk_hosts, root="/pc", session_timeout=2.0))
    roles = {child.name: child for child in plan.children}
    kazoo = KazooClient(zk_hosts, timeout=2.0)
    await asyncio.to_thread(kazoo.start, 10)

    def register(parent: str, rpc: object) -> str:
        path: str = kazoo.create(f"{parent}/t_", json.dumps({"rpc": rpc}).encode(), ephemeral=True, sequence=True,
                                 makepath=True)
        return path

    state = ClusterState(plan)
    try:
        await asyncio.to_thread(register, "/pc/comet/a", ["127.0.0.1:17170"])   # left by an earlier run
        await asyncio.to_thread(register, "/pc/message", "127.0.0.1:17070")
        await state.follow(timeout=10)
        assert await asyncio.to_thread(kazoo.get_children, "/pc/comet/a") == []
        assert await asyncio.to_thread(kazoo.get_children, "/pc/message") == []
        assert "removed 2 registration(s) left by a run that did not stop cleanly" in caplog.text
        assert not state.registered(roles["comet-a"]) and state.registered(roles["zookeeper"])

        first = await asyncio.to_thread(register, "/pc/comet/a", ["127.0.0.1:17170"])
        await asyncio.to_thread(register, "/pc/message", "127.0.0.1:17071")
        await eventually(lambda: state.registered(roles["comet-a"]) and state.registered(roles["message-2"]))
        assert not state.registered(roles["message-1"])
        await asyncio.to_thread(register, "/pc/comet/a", ["127.0.0.1:17270"])
        await eventually(lambda: state.comet_states() == {"comet-a": "active", "comet-a-standby": "standby",
                                                          "comet-b": "not registered"})
        await asyncio.to_thread(kazoo.delete, first)
        await eventually(lambda: state.comet_states()["comet-a-standby"] == "active")
        assert "comet a: comet-a-standby is active now (was comet-a)" in caplog.text
    finally:
        await state.close()
        await asyncio.to_thread(kazoo.stop)
        kazoo.close()


LISTENER = """
import signal, socket, sys, time
port, mode = int(sys.argv[1]), sys.argv[2]
if mode == "stubborn":
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
if mode == "bad-config":
    print("config x.conf: nonsense", flush=True)
    sys.exit(2)
listener = socket.socket()
listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
listener.bind(("127.0.0.1", port))
listener.listen()
print(f"listening on {port}", flush=True)
while True:
    time.sleep(1)
"""


def listener_child(name: str, kind: str, mode: str = "plain") -> Child:
    port = free_port()
    return Child(name, kind, (sys.executable, "-c", LISTENER, str(port), mode), (f"127.0.0.1:{port}",))


def small_plan(tmp_path, stages, stop_grace: float = 0.5):
    config = ClusterConfig(supervisor=SupervisorConfig(ready_timeout=20.0, stop_grace=stop_grace))
    return Plan(config, tmp_path, tmp_path, tuple(tuple(stage) for stage in stages), {}, ZookeeperConfig())


async def test_the_supervisor_prefixes_output_reports_a_death_once_and_stops_in_reverse(tmp_path, caplog):
    caplog.set_level(logging.INFO, logger="thirdparty.local_cluster")
    first, second = listener_child("first", "redis"), listener_child("second", "redis", "stubborn")
    front, doomed = listener_child("front", "web"), listener_child("doomed", "web")
    output = io.BytesIO()
    cluster = LocalCluster(small_plan(tmp_path, [[first, second], [front, doomed]]), output)
    try:
        await cluster.start()
        pids = cluster.pids()
        assert f"front  | listening on {front.binds[0].rsplit(':')[1]}\n".encode() in output.getvalue()
        os.kill(pids["doomed"], signal.SIGKILL)
        await eventually(lambda: "doomed pid=" in caplog.text and "unexpectedly" in caplog.text)
        assert alive(pids["front"])   # the others go on
    finally:
        await cluster.stop()
    text = caplog.text
    assert text.count("unexpectedly") == 1
    assert f"doomed pid={pids['doomed']}: killed by SIGKILL unexpectedly; the other processes keep running" in text
    assert f"second pid={pids['second']}: still running, SIGKILL" in text
    assert text.index(f"front pid={pids['front']}: stopped (killed by SIGTERM)") < \
        text.index(f"first pid={pids['first']}: stopped") < text.index(f"second pid={pids['second']}: stopped")
    assert not any(alive(pid) for pid in pids.values())


async def test_a_second_signal_skips_the_grace(tmp_path):
    stubborn = listener_child("stubborn", "web", "stubborn")
    cluster = LocalCluster(small_plan(tmp_path, [[stubborn]], stop_grace=600.0), io.BytesIO())
    try:
        await cluster.start()
    finally:
        stopping = asyncio.create_task(cluster.stop())
        await asyncio.sleep(0.1)
        cluster.hurry()
        await asyncio.wait_for(stopping, 20)   # without hurry() this would wait out the 600 s grace
    assert not alive(cluster.pids()["stubborn"])


async def test_a_role_that_exits_with_a_config_error_fails_the_start_with_code_2(tmp_path):
    bad = listener_child("web", "web", "bad-config")
    bad = replace(bad, role=RoleProcess("web", "web", "", ZookeeperConfig(), bad.binds, ()))
    output = io.BytesIO()
    cluster = LocalCluster(small_plan(tmp_path, [[bad]]), output)
    try:
        with pytest.raises(ClusterError, match="web exited with code 2 before it was ready") as caught:
            await cluster.start()
        assert caught.value.code == 2
        assert b"web | config x.conf: nonsense\n" in output.getvalue()
    finally:
        await cluster.stop()
