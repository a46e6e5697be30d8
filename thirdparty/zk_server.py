"""A real ZooKeeper server on this machine: Debian's ``zookeeper`` package run directly with java.

:Status: used by ``thirdparty/local_cluster.py`` (``pushcluster cluster``) and by the tests' ZooKeeper fixture
(``tests/zookeeper.py``).

No systemd and no ``zkServer.sh``: a generated ``zoo.cfg`` (standalone, one loopback port, data in a directory of
our own, the admin HTTP server off) and ``java -cp zookeeper.jar ZooKeeperServerMain zoo.cfg``. The jar's manifest
names its dependencies in ``/usr/share/java``; an SLF4J binding is added to the class path: ``slf4j-nop`` (silent)
or ``slf4j-simple`` at a chosen level on stderr. The server is ready when the ``srvr`` four-letter command answers
with a ``Mode:`` line (``ruok`` answers ``imok`` earlier, before it serves).

ZooKeeper grants session timeouts between 2 and 20 ticks (``tick_ms``), so a short tick allows short sessions and
fast failover. Sessions and znodes are kept in the data directory: a restart on the same directory keeps them, and
sessions survive if their clients come back within their timeout.
"""
from __future__ import annotations

import os
import shutil
import socket
import subprocess
import time

ZOOKEEPER_JAR = "/usr/share/java/zookeeper.jar"
SLF4J_NOP_JAR = "/usr/share/java/slf4j-nop.jar"
SLF4J_SIMPLE_JAR = "/usr/share/java/slf4j-simple.jar"
DEBIAN_PACKAGE = "zookeeper"
TICK_MS = 200
START_TIMEOUT = 30.0
STOP_GRACE = 10.0
FOUR_LETTER_WORDS = ("ruok", "srvr", "stat", "mntr")
DATE_FORMAT = "yyyy-MM-dd HH:mm:ss,SSS"
# Noise of ZooKeeper 3.8 that says nothing wrong: a WARN at every start that maxCnxns (a limit we do not want) is
# not set; a NullPointerException at ERROR when a four-letter command (our readiness poll) arrives after the port
# opened but before the database is loaded; a WARN with a stack trace whenever a client's process dies.
QUIETER = {"org.apache.zookeeper.server.ServerCnxnFactory": "error", "org.apache.zookeeper.server.ServerCnxn": "off",
           "org.apache.zookeeper.server.NIOServerCnxn": "error"}


def missing_zookeeper(java: str = "java", jar: str = ZOOKEEPER_JAR) -> str:
    """Why a server cannot be started here ("" when it can)."""
    if shutil.which(java) is None:
        return f"{java} is not installed (Debian: apt-get install -y {DEBIAN_PACKAGE}, which brings it)"
    if not os.path.exists(jar):
        return f"{jar} is missing (Debian: apt-get install -y {DEBIAN_PACKAGE})"
    return ""


def four_letter(host: str, port: int, command: bytes, timeout: float = 1.0) -> bytes:
    """The reply to a ZooKeeper four-letter command (b"" when nothing answers)."""
    try:
        with socket.create_connection((host, port), timeout=timeout) as sock:
            sock.sendall(command)
            chunks: list[bytes] = []
            while True:
                chunk = sock.recv(4096)
                if not chunk:
                    return b"".join(chunks)
                chunks.append(chunk)
    except OSError:
        return b""


def is_serving(host: str, port: int, timeout: float = 1.0) -> bool:
    """True once the server at host:port serves clients (its ``srvr`` reply has a ``Mode:`` line)."""
    return b"Mode:" in four_letter(host, port, b"srvr", timeout)


def zoo_cfg(data_dir: str, host: str, port: int, tick_ms: int = TICK_MS) -> str:
    """The ``zoo.cfg`` text of a standalone server on host:port keeping its data in ``data_dir``."""
    return "\n".join([
        f"tickTime={tick_ms}",
        f"dataDir={data_dir}",
        f"clientPort={port}",
        f"clientPortAddress={host}",
        "maxClientCnxns=0",
        "admin.enableServer=false",
        f"4lw.commands.whitelist={','.join(FOUR_LETTER_WORDS)}",
        "autopurge.snapRetainCount=3",
        "autopurge.purgeInterval=1",
        "",
    ])


def java_command(config_path: str, *, java: str = "java", jar: str = ZOOKEEPER_JAR, heap_mb: int = 64,
                 log_level: str = "") -> list[str]:
    """argv of a server reading ``config_path``; ``log_level`` "" is silent, else slf4j-simple's level
    ("warn", "info", ...) on stderr."""
    binding = SLF4J_SIMPLE_JAR if log_level else SLF4J_NOP_JAR
    argv = [java, f"-Xmx{heap_mb}m", "-XX:+UseSerialGC"]
    if log_level:  # lines like the Python roles': "2024-05-01 12:00:00,123 WARN <logger> - <message>"
        argv += [f"-Dorg.slf4j.simpleLogger.defaultLogLevel={log_level}",
                 "-Dorg.slf4j.simpleLogger.showDateTime=true", f"-Dorg.slf4j.simpleLogger.dateTimeFormat={DATE_FORMAT}",
                 "-Dorg.slf4j.simpleLogger.showThreadName=false"]
        argv += [f"-Dorg.slf4j.simpleLogger.log.{logger}={level}" for logger, level in QUIETER.items()]
    return argv + ["-cp", f"{jar}:{binding}", "org.apache.zookeeper.server.ZooKeeperServerMain", config_path]


class ZooKeeperServer:
    """One standalone server process on host:port with its files in ``directory`` (blocking start and stop).

    ``directory`` holds ``zoo.cfg``, ``data/`` and the server's output (``log_name``); it is kept across
    :meth:`stop` and :meth:`start`, so a restart keeps the znodes and sessions.
    """

    def __init__(self, directory: str, port: int, *, host: str = "127.0.0.1", tick_ms: int = TICK_MS,
                 log_name: str = "zk.log") -> None:
        self.host, self.port, self.dir = host, port, directory
        self.log_path = os.path.join(directory, log_name)
        self.config_path = os.path.join(directory, "zoo.cfg")
        self.proc: subprocess.Popen[bytes] | None = None
        os.makedirs(os.path.join(directory, "data"), exist_ok=True)
        with open(self.config_path, "w", encoding="ascii") as cfg:
            cfg.write(zoo_cfg(os.path.join(directory, "data"), host, port, tick_ms))

    @property
    def hosts(self) -> str:
        """The connect string of this server."""
        return f"{self.host}:{self.port}"

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def start(self, timeout: float = START_TIMEOUT) -> None:
        """Start the server (if it is not running) and wait until it serves; RuntimeError if it does not."""
        if self.running:
            return
        with open(self.log_path, "ab") as log:
            self.proc = subprocess.Popen(java_command(self.config_path), stdout=log, stderr=subprocess.STDOUT,
                                         stdin=subprocess.DEVNULL)
        deadline = time.monotonic() + timeout
        while not is_serving(self.host, self.port):
            if self.proc.poll() is not None or time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(f"ZooKeeper did not start on {self.hosts}; see {self.log_path}")
            time.sleep(0.02)

    def stop(self, grace: float = STOP_GRACE) -> None:
        """SIGTERM (as an operator would), SIGKILL after ``grace`` seconds; the directory stays for a restart."""
        if self.proc is None:
            return
        self.proc.terminate()
        try:
            self.proc.wait(grace)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(grace)
        self.proc = None
