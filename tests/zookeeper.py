"""A real ZooKeeper server for the tests, and the failures the cluster tests inflict on it.

The server is Debian's ``zookeeper`` package run directly with java and a generated ``zoo.cfg`` (standalone, a
free loopback port, tickTime 200 ms so that sessions down to 0.4 s can be negotiated, sessions and data kept in a
temporary directory so that a restart keeps them, as a real one does). Readiness is the ``srvr`` four-letter
command answering with a ``Mode:`` line.

Failures, all real:

* :meth:`ZooKeeperServer.stop` / :meth:`start` / :meth:`restart`: the server process goes away and comes back on
  the same port with the same data; sessions survive if the clients come back within their timeout.
* :func:`expire_session`: a second client joins the session with its id and password and closes it; the server
  expires the session for everyone (the first client's connection is dropped and it is told "expired" when it
  reconnects). This is ZooKeeper's own recipe for testing expiry, with nothing simulated on the client side.
"""
from __future__ import annotations

import os
import shutil
import socket
import subprocess
import tempfile
import time
import uuid

from kazoo.client import KazooClient

from tests.helpers import free_port

ZOOKEEPER_JAR = "/usr/share/java/zookeeper.jar"
SLF4J_NOP_JAR = "/usr/share/java/slf4j-nop.jar"
TICK_MS = 200
START_TIMEOUT = 30.0


def missing_zookeeper() -> str:
    """Why a server cannot be started here ("" when it can)."""
    if shutil.which("java") is None:
        return "java is not installed (bash .ci/run installs the zookeeper package, which brings it)"
    if not os.path.exists(ZOOKEEPER_JAR):
        return f"{ZOOKEEPER_JAR} is missing (apt-get install zookeeper, or bash .ci/run)"
    return ""


def four_letter(host: str, port: int, command: bytes, timeout: float = 1.0) -> bytes:
    """The reply to a ZooKeeper four-letter command (b"" when nothing answers)."""
    try:
        with socket.create_connection((host, port), timeout=timeout) as sock:
            sock.sendall(command)
            chunks = []
            while True:
                chunk = sock.recv(4096)
                if not chunk:
                    return b"".join(chunks)
                chunks.append(chunk)
    except OSError:
        return b""


class ZooKeeperServer:
    """One standalone ZooKeeper server process on 127.0.0.1:<free port>."""

    def __init__(self) -> None:
        self.host = "127.0.0.1"
        self.port = free_port()
        self.dir = tempfile.mkdtemp(prefix="pushcluster-zk-")
        self.proc: subprocess.Popen[bytes] | None = None
        self.controllable = True
        os.mkdir(os.path.join(self.dir, "data"))
        with open(os.path.join(self.dir, "zoo.cfg"), "w", encoding="ascii") as cfg:
            cfg.write(f"tickTime={TICK_MS}\ndataDir={self.dir}/data\nclientPort={self.port}\n"
                      f"clientPortAddress={self.host}\nmaxClientCnxns=0\nadmin.enableServer=false\n"
                      "4lw.commands.whitelist=ruok,srvr\n")

    @classmethod
    def external(cls, hosts: str) -> ZooKeeperServer:
        """A server somebody else runs (``--zk-hosts``): usable, not stoppable."""
        server = cls.__new__(cls)
        host, _, port = hosts.partition("/")[0].rpartition(":")
        server.host, server.port, server.dir, server.proc, server.controllable = host, int(port), "", None, False
        return server

    @property
    def hosts(self) -> str:
        return f"{self.host}:{self.port}"

    @property
    def running(self) -> bool:
        return not self.controllable or (self.proc is not None and self.proc.poll() is None)

    def start(self) -> None:
        self._require_control()
        if self.running:
            return
        log = open(os.path.join(self.dir, "zk.log"), "ab")
        with log:
            self.proc = subprocess.Popen(
                ["java", "-Xmx64m", "-XX:+UseSerialGC", "-cp", f"{ZOOKEEPER_JAR}:{SLF4J_NOP_JAR}",
                 "org.apache.zookeeper.server.ZooKeeperServerMain", os.path.join(self.dir, "zoo.cfg")],
                stdout=log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + START_TIMEOUT
        while b"Mode:" not in four_letter(self.host, self.port, b"srvr"):
            if self.proc.poll() is not None or time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(f"ZooKeeper did not start on {self.hosts}; see {self.dir}/zk.log")
            time.sleep(0.02)

    def stop(self) -> None:
        """Stop the server (SIGTERM, as an operator would); the data directory stays for a restart."""
        self._require_control()
        if self.proc is not None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)
            self.proc = None

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
