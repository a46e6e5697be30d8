"""`pushcluster standalone` started as a subprocess, as the README says: it serves a push end to end, stops
cleanly on SIGTERM, and its SQLite store keeps messages across a restart."""
from __future__ import annotations

import asyncio
import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path
from typing import Iterator

import httpx
import pytest

from tests.helpers import free_port, wait_port
from tests.integration.conftest import TcpSubscriber, ws_subscribe

pytestmark = pytest.mark.integration


def pushcluster_command() -> str:
    """The console script installed beside this Python (pip install -e . puts it there)."""
    script = Path(sys.executable).with_name("pushcluster")
    found = str(script) if script.exists() else shutil.which("pushcluster")
    if not found:
        pytest.fail("the pushcluster command is not installed: pip install -e .")
    return found


class Standalone:
    def __init__(self, data_dir: Path) -> None:
        self.ports = {name: free_port() for name in
                      ("web", "admin", "ws", "tcp", "comet-rpc", "stat", "message-rpc")}
        self.data_dir = data_dir
        self.proc: subprocess.Popen[str] | None = None
        self.output = ""

    def start(self) -> None:
        args = [pushcluster_command(), "standalone", "--data-dir", str(self.data_dir)]
        for name, port in self.ports.items():
            args += [f"--{name}-port", str(port)]
        self.proc = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        for name in ("web", "admin", "ws", "tcp"):
            wait_port("127.0.0.1", self.ports[name], timeout=20)

    def stop(self) -> int:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGTERM)
        out, _ = self.proc.communicate(timeout=20)
        self.output += out
        code = self.proc.returncode
        self.proc = None
        return code

    def kill(self) -> None:
        if self.proc is not None:
            self.proc.kill()
            self.proc.communicate()
            self.proc = None


@pytest.fixture
def standalone(tmp_path: Path) -> Iterator[Standalone]:
    node = Standalone(tmp_path / "data")
    try:
        yield node
    finally:
        node.kill()


async def test_standalone_serves_a_push_and_keeps_messages_across_restart(standalone: Standalone) -> None:
    standalone.start()
    p = standalone.ports
    public, admin = f"http://127.0.0.1:{p['web']}", f"http://127.0.0.1:{p['admin']}"
    async with httpx.AsyncClient(timeout=5) as http:
        server = (await http.get(f"{public}/1/server/get", params={"k": "zoe", "p": 1})).json()
        assert server["data"]["server"] == f"127.0.0.1:{p['ws']}"
        ws = await ws_subscribe(f"ws://{server['data']['server']}", "zoe")
        tcp = await TcpSubscriber.connect(("127.0.0.1", p["tcp"]), "zoe")
        try:
            reply = (await http.post(f"{admin}/push/private", params={"key": "zoe", "expire": 600},
                                     content=b'{"hello":"world"}')).json()
            assert reply["ret"] == 0 and reply["data"]["online"] == 2
            mid = reply["data"]["mid"]
            expected = b'{"msg":{"hello":"world"},"mid":%d,"gid":0}' % mid
            assert (await asyncio.wait_for(ws.recv(), 5)).encode() == expected
            assert await tcp.frame() == expected
        finally:
            await ws.close()
            await tcp.close()

    assert standalone.stop() == 0
    assert "pushcluster standalone is running" in standalone.output
    assert os.path.exists(standalone.data_dir / "messages.db")

    standalone.start()
    async with httpx.AsyncClient(timeout=5) as http:
        fetched = (await http.get(f"{public}/1/msg/get", params={"k": "zoe", "m": 0})).json()
        assert fetched["data"]["msgs"] == [{"msg": {"hello": "world"}, "mid": mid, "gid": 0}]
        later = (await http.post(f"{admin}/push/private", params={"key": "zoe", "expire": 600},
                                 content=b'{"n":2}')).json()
        assert later["data"]["mid"] > mid
    assert standalone.stop() == 0


def test_standalone_refuses_an_unprotected_public_admin_listener(tmp_path: Path) -> None:
    result = subprocess.run([pushcluster_command(), "standalone", "--data-dir", str(tmp_path),
                             "--admin-host", "0.0.0.0"], capture_output=True, text=True, timeout=20)
    assert result.returncode == 2
    assert "admin" in result.stderr and "token" in result.stderr
    assert "Traceback" not in result.stderr
