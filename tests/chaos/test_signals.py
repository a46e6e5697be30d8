"""Every role as a real process (``python -m message|comet|web``, and ``python -m pushcluster standalone``) and
its signals (README "Running the roles separately", thirdparty/runtime.py ``serve``):

* SIGTERM stops it gracefully: exit code 0, its clients told (a WebSocket subscriber gets close code 1001);
* SIGTERM while a push is running lets that push finish and answers it (the call's dependency is frozen with
  SIGSTOP when the signal arrives and let go with SIGCONT right after);
* a second SIGTERM while the stop is slow (a running call whose dependency stays frozen) exits at once: exit
  code 1 and "exiting at once" in the log, without the graceful "stopped".

Dependencies frozen: message -> its redis-server (a test's own), comet -> the message node, web -> the comet,
standalone (``--redis``) -> its redis-server.
"""
from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import socket
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, AsyncIterator, Awaitable, Callable

import httpx
import pytest
import websockets

from comet.client import CometClient
from tests.chaos.rawclients import stalled_ws
from tests.conftest import RedisServer
from tests.helpers import free_port, wait_port
from tests.integration.conftest import ws_subscribe
from tests.processes import CommandProcess, RoleProcess, exit_code, send_signal
from thirdparty.rpc_client import RpcClient

pytestmark = [pytest.mark.chaos, pytest.mark.redis, pytest.mark.integration]

ROLES = ["message", "comet", "web", "standalone"]
STOP_BOUND = 15.0        # seconds a SIGTERMed node has to exit (a hang guard)
AT_ONCE_BOUND = 5.0      # seconds to exit after the second signal (a hang guard: the stop left would take 20 s)
SLOW = 20.0              # seconds a frozen dependency would make the running call (and so the stop) wait
PAUSE = 0.3              # seconds into the stop before the dependency is let go / the second signal is sent
FIRST_SIGNAL = "stopping gracefully"
SECOND_SIGNAL = "exiting at once"



@dataclass
class Node:
    """The process under test, its dependency (frozen to make a call slow) and how to call it."""

    process: RoleProcess
    dependency: int                                   # pid to SIGSTOP / SIGCONT
    push: Callable[[], Awaitable[Any]]                # a push through this node; returns what came back
    ws: str = ""                                      # its WebSocket listener, when it has one
    others: list[RoleProcess] = field(default_factory=list)
    closers: list[Callable[[], Awaitable[None]]] = field(default_factory=list)


def _addr() -> str:
    return f"127.0.0.1:{free_port()}"


def _port(address: str) -> int:
    return int(address.rsplit(":", 1)[1])


async def _ready(*addresses: str) -> None:
    for address in addresses:
        await asyncio.to_thread(wait_port, "127.0.0.1", _port(address), 30.0)


def _message(redis_url: str, tmp_path: Path, timeout: float) -> tuple[RoleProcess, str]:
    rpc = _addr()
    process = RoleProcess("message", "message", {"rpc": {"bind": rpc},
                                                 "storage": {"redis": {"r1": redis_url}, "redis_timeout": timeout}},
                          tmp_path)
    process.start()
    return process, rpc


def _comet(message_rpc: str, tmp_path: Path, timeout: float) -> tuple[RoleProcess, dict[str, str]]:
    addresses = {name: _addr() for name in ("tcp", "ws", "rpc")}
    process = RoleProcess("comet", "comet", {
        "bind": {"tcp": [addresses["tcp"]], "ws": [addresses["ws"]], "rpc": addresses["rpc"], "stat": ""},
        "message": {"rpc": message_rpc, "timeout": timeout}}, tmp_path)
    process.start()
    return process, addresses


def _http_push(http: httpx.AsyncClient, admin: str) -> Callable[[], Awaitable[Any]]:
    async def push() -> Any:
        reply = await http.post(f"{admin}/push/private", params={"key": "k", "expire": 60}, content=b'{"n":1}')
        return reply.json()
    return push


async def _make(role: str, redis: RedisServer, tmp_path: Path) -> Node:
    if role == "message":
        process, rpc = _message(redis.url, tmp_path, SLOW)
        await _ready(rpc)
        rpc_client = RpcClient(rpc, timeout=SLOW + 10)
        return Node(process, _pid(redis), lambda: rpc_client.call("MessageRPC.SavePrivate", "k", b'{"n":1}', 60),
                    closers=[rpc_client.close])
    if role == "comet":
        message, rpc = _message(redis.url, tmp_path, 1.0)
        process, comet = _comet(rpc, tmp_path, SLOW)
        await _ready(rpc, comet["rpc"], comet["ws"])
        comet_client = CometClient(comet["rpc"], timeout=SLOW + 10)
        return Node(process, _pid(message), lambda: comet_client.push_private("k", b'{"n":1}', 60), ws=comet["ws"],
                    others=[message], closers=[comet_client.close])
    if role == "web":
        message, rpc = _message(redis.url, tmp_path, 1.0)
        comet_process, comet = _comet(rpc, tmp_path, 2.0)
        public, admin = _addr(), _addr()
        process = RoleProcess("web", "web", {
            "public": {"bind": [public]}, "admin": {"bind": [admin]}, "message": {"rpc": rpc},
            "comets": {"node1": {"rpc": [comet["rpc"]], "tcp": [comet["tcp"]], "ws": [comet["ws"]]}},
            "rpc": {"comet_timeout": SLOW}}, tmp_path)
        process.start()
        await _ready(rpc, comet["rpc"], public, admin)
        http = httpx.AsyncClient(timeout=SLOW + 10)
        return Node(process, _pid(comet_process), _http_push(http, f"http://{admin}"), others=[message, comet_process],
                    closers=[http.aclose])
    ports = {name: free_port() for name in ("web", "admin", "ws", "tcp", "comet-rpc", "stat", "message-rpc")}
    process = CommandProcess("pushcluster", "standalone", [
        "standalone", "--redis", redis.url, "--data-dir", str(tmp_path / "data"),
        *(arg for name, port in ports.items() for arg in (f"--{name}-port", str(port)))], tmp_path)
    process.start()
    await _ready(*(f"127.0.0.1:{port}" for port in ports.values()))
    http = httpx.AsyncClient(timeout=SLOW + 10)
    return Node(process, _pid(redis), _http_push(http, f"http://127.0.0.1:{ports['admin']}"),
                ws=f"127.0.0.1:{ports['ws']}", closers=[http.aclose])


def _thaw(pid: int) -> None:
    """SIGCONT, if the process is still there."""
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGCONT)


def _pid(target: RoleProcess | RedisServer) -> int:
    assert target.proc is not None
    return target.proc.pid


@pytest.fixture(params=ROLES)
async def node(request: pytest.FixtureRequest, aof_redis: RedisServer, tmp_path: Path) -> AsyncIterator[Node]:
    made = await _make(request.param, aof_redis, tmp_path)
    try:
        yield made
    finally:
        _thaw(made.dependency)
        for close in made.closers:
            await close()
        for process in [made.process, *made.others]:
            await asyncio.to_thread(process.close)


async def _first_signal(node: Node) -> None:
    """SIGTERM, then wait until the node logged that it is stopping."""
    send_signal(node.process, signal.SIGTERM)
    deadline = time.monotonic() + STOP_BOUND
    while FIRST_SIGNAL not in node.process.log():
        assert time.monotonic() < deadline, f"no '{FIRST_SIGNAL}' in the log:\n{node.process.log()[-2000:]}"
        await asyncio.sleep(0.02)


async def test_sigterm_stops_gracefully(node: Node) -> None:
    subscriber = await ws_subscribe(f"ws://{node.ws}", "k") if node.ws else None
    try:
        await _first_signal(node)
        code = await asyncio.to_thread(exit_code, node.process, STOP_BOUND)
        if subscriber is not None:
            with pytest.raises(websockets.ConnectionClosed) as closed:
                await asyncio.wait_for(subscriber.recv(), STOP_BOUND)
            assert closed.value.rcvd is not None and closed.value.rcvd.code == 1001, closed.value
    finally:
        if subscriber is not None:
            await subscriber.close()
    log = node.process.log()
    assert code == 0, log[-3000:]
    assert "INFO thirdparty.runtime: stopped" in log and "Traceback" not in log, log[-3000:]


@pytest.mark.parametrize("node", ROLES, indirect=True)
async def test_sigterm_answers_the_push_it_is_running(node: Node) -> None:
    os.kill(node.dependency, signal.SIGSTOP)
    call = asyncio.ensure_future(node.push())
    try:
        await asyncio.sleep(PAUSE)               # the push is under way, held by the frozen dependency
        assert not call.done(), call
        await _first_signal(node)
        await asyncio.sleep(PAUSE)
        _thaw(node.dependency)
        answer = await asyncio.wait_for(call, STOP_BOUND)
    finally:
        _thaw(node.dependency)
        if not call.done():
            call.cancel()
        await asyncio.gather(call, return_exceptions=True)
    code = await asyncio.to_thread(exit_code, node.process, STOP_BOUND)
    assert code == 0, node.process.log()[-3000:]
    if isinstance(answer, dict):      # the web API's envelope
        assert answer["ret"] == 0 and answer["data"]["mid"] > 0, answer
    else:                             # MessageRPC.SavePrivate's mid or CometRPC.PushPrivate's result
        assert (answer if isinstance(answer, int) else answer.mid) > 0, answer


@pytest.mark.parametrize("node", ROLES, indirect=True)
async def test_a_second_sigterm_during_a_slow_stop_exits_at_once(node: Node) -> None:
    stalled: socket.socket | None = await stalled_ws(node.ws, "k2") if node.ws else None  # never answers a close
    os.kill(node.dependency, signal.SIGSTOP)
    call = asyncio.ensure_future(node.push())
    try:
        await asyncio.sleep(PAUSE)
        await _first_signal(node)
        await asyncio.sleep(PAUSE)
        assert node.process.proc is not None and node.process.proc.poll() is None, \
            f"the stop was not slow: it did not wait for the running push\n{node.process.log()[-2000:]}"
        send_signal(node.process, signal.SIGTERM)
        code = await asyncio.to_thread(exit_code, node.process, AT_ONCE_BOUND)
    finally:
        _thaw(node.dependency)
        if stalled is not None:
            stalled.close()
        call.cancel()
        await asyncio.gather(call, return_exceptions=True)
    log = node.process.log()
    assert code == 1, f"exit code {code}\n{log[-3000:]}"
    assert SECOND_SIGNAL in log and "INFO thirdparty.runtime: stopped" not in log, log[-3000:]

