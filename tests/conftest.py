"""Shared fixtures: a real redis-server on a free loopback port, per-test flushed database.

The server is started once per test session from the `redis-server` binary on PATH (installed by `.ci/run`
from Debian's packages). Tests that need it are skipped with a clear reason when the binary is absent, or use
`--redis-url` to point at a running server (its database is flushed before every test).
"""
from __future__ import annotations

import shutil
import subprocess
import tempfile
from typing import Iterator

import pytest
import redis

from tests.helpers import free_port, wait_port


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption("--redis-url", default="", help="use this Redis instead of starting redis-server")


class RedisServer:
    """One redis-server subprocess on 127.0.0.1:<free port>."""

    def __init__(self) -> None:
        self.port = free_port()
        self.dir = tempfile.mkdtemp(prefix="pushcluster-redis-")
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        self.proc = subprocess.Popen(
            ["redis-server", "--port", str(self.port), "--bind", "127.0.0.1", "--save", "",
             "--appendonly", "no", "--dir", self.dir, "--daemonize", "no", "--loglevel", "warning"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        wait_port("127.0.0.1", self.port)

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
