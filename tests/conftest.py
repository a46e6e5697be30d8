"""Shared fixtures: a real redis-server and a real ZooKeeper server on free loopback ports.

Redis: started once per test session from the `redis-server` binary on PATH (installed by `.ci/run` from
Debian's packages); `redis_url` is flushed before every test. `--redis-url` points at a running server instead.

ZooKeeper: started once per session with java from Debian's `zookeeper` package (tests/zookeeper.py), tickTime
200 ms so that sessions of about 1 s can be negotiated; `zk_hosts` is a connect string with a fresh chroot per
test. `zk_server` can stop, restart and expire sessions for the failure tests. `--zk-hosts` points at a running
server instead (then the restart tests are skipped). Tests that need a server it cannot have are skipped with the
reason.
"""
from __future__ import annotations

import shutil
import subprocess
import tempfile
from typing import AsyncIterator, Awaitable, Callable, Iterator, Sequence

import pytest
import redis

from tests.helpers import free_port, wait_port
from tests.zookeeper import ZooKeeperServer, make_chroot, missing_zookeeper
from thirdparty.zk import ZkSession


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption("--redis-url", default="", help="use this Redis instead of starting redis-server")
    parser.addoption("--zk-hosts", default="", help="use this ZooKeeper (host:port) instead of starting one")


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "zookeeper: needs a real ZooKeeper server")


class RedisServer:
    """One redis-server subprocess on 127.0.0.1:<free port>.

    ``options`` are extra redis-server arguments, given after the defaults so that they override them (e.g.
    ``("--appendonly", "yes", "--appendfsync", "always")``). :meth:`kill` and :meth:`start` again bring the server
    back on the same port with the same data directory.
    """

    def __init__(self, options: Sequence[str] = ()) -> None:
        self.port = free_port()
        self.dir = tempfile.mkdtemp(prefix="pushcluster-redis-")
        self.options = list(options)
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        self.proc = subprocess.Popen(
            ["redis-server", "--port", str(self.port), "--bind", "127.0.0.1", "--save", "",
             "--appendonly", "no", "--dir", self.dir, "--daemonize", "no", "--loglevel", "warning",
             *self.options],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        wait_port("127.0.0.1", self.port)

    def kill(self) -> None:
        """SIGKILL, as a crash: nothing is flushed on the way out; the data directory stays for :meth:`start`."""
        if self.proc is not None:
            self.proc.kill()
            self.proc.wait(10)
            self.proc = None

    def stop(self) -> None:
        if self.proc is not None:
            self.proc.terminate()
            self.proc.wait(10)
            self.proc = None
        shutil.rmtree(self.dir, ignore_errors=True)


@pytest.fixture(scope="session")
def redis_server(request: pytest.FixtureRequest) -> Iterator[str]:
    """URL of a Redis server for the whole session."""
    url = request.config.getoption("--redis-url")
    if url:
        yield url
        return
    if shutil.which("redis-server") is None:
        pytest.skip("redis-server is not installed (bash .ci/run installs it)")
    server = RedisServer()
    server.start()
    try:
        yield server.url
    finally:
        server.stop()


@pytest.fixture
def redis_url(redis_server: str) -> Iterator[str]:
    """URL of a Redis database flushed before the test."""
    client = redis.Redis.from_url(redis_server)
    client.flushall()
    client.close()
    yield redis_server


@pytest.fixture(scope="session")
def zk_server(request: pytest.FixtureRequest) -> Iterator[ZooKeeperServer]:
    """A ZooKeeper server for the whole session (see tests/zookeeper.py for stop/restart/expire)."""
    external = request.config.getoption("--zk-hosts")
    if external:
        yield ZooKeeperServer.external(external)
        return
    why = missing_zookeeper()
    if why:
        pytest.skip(why)
    server = ZooKeeperServer()
    server.start()
    try:
        yield server
    finally:
        server.close()


@pytest.fixture
def zk_hosts(zk_server: ZooKeeperServer) -> str:
    """``127.0.0.1:PORT/test-<uuid>``: a connect string whose chroot exists and is this test's alone."""
    if not zk_server.running:
        zk_server.start()  # an earlier test stopped it and failed before starting it again
    return make_chroot(zk_server.hosts)


@pytest.fixture
async def zk_sessions(zk_hosts: str) -> AsyncIterator[Callable[..., Awaitable[ZkSession]]]:
    """``await zk_sessions(session_timeout=1.0, root="/pc")`` -> a started ZkSession on this test's chroot.

    Every session it made is stopped after the test.
    """
    started: list[ZkSession] = []

    async def make(session_timeout: float = 1.0, root: str = "/pc") -> ZkSession:
        session = ZkSession(zk_hosts, session_timeout=session_timeout, root=root)
        await session.start(timeout=5.0)
        started.append(session)
        return session

    yield make
    for session in reversed(started):
        await session.stop()
