"""A real ZooKeeper server for the tests, and the failures the cluster tests inflict on it.

The server is :class:`thirdparty.zk_server.ZooKeeperServer` (Debian's ``zookeeper`` package run directly with java
and a generated ``zoo.cfg``) on a free loopback port, tickTime 200 ms so that sessions down to 0.4 s can be
negotiated, sessions and data kept in a temporary directory so that a restart keeps them, as a real one does.
Readiness is the ``srvr`` four-letter command answering with a ``Mode:`` line.

Failures, all real:

* :meth:`ZooKeeperServer.stop` / :meth:`start` / :meth:`restart`: the server process goes away and comes back on
  the same port with the same data; sessions survive if the clients come back within their timeout.
* :func:`expire_session`: a second client joins the session with its id and password and closes it; the server
  expires the session for everyone (the first client's connection is dropped and it is told "expired" when it
  reconnects). This is ZooKeeper's own recipe for testing expiry, with nothing simulated on the client side.
"""
from __future__ import annotations

import shutil
import tempfile
import time
import uuid

from kazoo.client import KazooClient

from tests.helpers import free_port
from thirdparty import zk_server
from thirdparty.zk_server import SLF4J_NOP_JAR, ZOOKEEPER_JAR, four_letter

__all__ = ["SLF4J_NOP_JAR", "START_TIMEOUT", "TICK_MS", "ZOOKEEPER_JAR", "ZooKeeperServer", "expire_session",
           "four_letter", "make_chroot", "missing_zookeeper"]

TICK_MS = 200
START_TIMEOUT = 30.0


def missing_zookeeper() -> str:
    """Why a server cannot be started here ("" when it can)."""
    why = zk_server.missing_zookeeper()
    return f"{why}; bash .ci/run installs it" if why else ""


class ZooKeeperServer(zk_server.ZooKeeperServer):
    """One standalone ZooKeeper server process on 127.0.0.1:<free port>, its files in a temporary directory."""

    def __init__(self) -> None:
        super().__init__(tempfile.mkdtemp(prefix="pushcluster-zk-"), free_port(), tick_ms=TICK_MS)
        self.controllable = True

    @classmethod
    def external(cls, hosts: str) -> ZooKeeperServer:
        """A server somebody else runs (``--zk-hosts``): usable, not stoppable."""
        server = cls.__new__(cls)
        host, _, port = hosts.partition("/")[0].rpartition(":")
        server.host, server.port, server.dir, server.proc, server.controllable = host, int(port), "", None, False
        return server

    @property
    def running(self) -> bool:
        return not self.controllable or super().running

    def start(self, timeout: float = START_TIMEOUT) -> None:
        self._require_control()
        super().start(timeout)

    def stop(self, grace: float = zk_server.STOP_GRACE) -> None:
        """Stop the server (SIGTERM, as an operator would); the data directory stays for a restart."""
        self._require_control()
        super().stop(grace)

    def restart(self, down_for: float = 0.0) -> None:
        self.stop()
        time.sleep(down_for)
        self.start()

    def close(self) -> None:
        if self.controllable:
            self.stop()
            shutil.rmtree(self.dir, ignore_errors=True)

    def _require_control(self) -> None:
        if not self.controllable:
            import pytest
            pytest.skip("--zk-hosts names a server these tests cannot stop or restart")


def _client(hosts: str, **kwargs: object) -> KazooClient:
    client = KazooClient(hosts, timeout=2.0, **kwargs)
    client.start(10)
    return client


def _close(client: KazooClient) -> None:
    client.stop()
    client.close()


def make_chroot(hosts: str) -> str:
    """Create ``/test-<uuid>`` and return ``hosts/test-<uuid>`` (ZooKeeper requires a chroot to exist)."""
    chroot = f"/test-{uuid.uuid4().hex}"
    client = _client(hosts)
    try:
        client.create(chroot)
    finally:
        _close(client)
    return hosts + chroot


def expire_session(hosts: str, client_id: tuple[int, bytes]) -> None:
    """Make the server expire the session ``client_id`` (blocking; run it with ``asyncio.to_thread``)."""
    session_id, password = client_id
    intruder = _client(hosts.partition("/")[0], client_id=(session_id, password))
    try:
        if intruder.client_id[0] != session_id:
            raise RuntimeError(f"session 0x{session_id:x} is already gone")
    finally:
        _close(intruder)  # closing the shared session ends it on the server, for every client of it
