"""Fixtures of the fault tests: a redis-server of the test's own that persists every write to its AOF before it
answers (``appendonly yes``, ``appendfsync always``), so that a test can SIGKILL and restart it and lose nothing
acknowledged; and the ``chaos`` marker (registered here until setup.cfg lists it).
"""
from __future__ import annotations

import shutil
from pathlib import Path
from typing import Iterator

import pytest

from tests.chaos.cluster import PERSISTENT
from tests.conftest import RedisServer


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "chaos: kills and restarts real processes under load (tests/chaos)")


@pytest.fixture
def aof_redis(tmp_path: Path) -> Iterator[RedisServer]:
    """A started redis-server with its data directory (and AOF) in ``tmp_path/redis``; stopped after the test."""
    if shutil.which("redis-server") is None:
        pytest.skip("redis-server is not installed (bash .ci/run installs it)")
    data = tmp_path / "redis"
    data.mkdir()
    server = RedisServer((*PERSISTENT, "--dir", str(data)))
    server.start()
    try:
        yield server
    finally:
        if server.proc is not None and server.proc.poll() is None:
            server.proc.kill()   # SIGCONT first is not needed: SIGKILL also ends a stopped process
            server.proc.wait(10)
        server.proc = None
        server.stop()
