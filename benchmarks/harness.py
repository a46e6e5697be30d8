"""Server processes for one scenario: free ports, generated TOML configs, start/ready/stop, RSS and CPU readings.

A :class:`Cluster` is a context manager owning a temp dir and every process it started (redis-server,
``python -m message|comet|web -c FILE``, the bare tornado baseline). Each child gets its open-files soft limit
raised to the hard one and ``PR_SET_PDEATHSIG`` (it gets SIGTERM if this process dies, even by SIGKILL); on
leaving the ``with`` block, normally, on an exception or on Ctrl-C, every child gets SIGTERM, then SIGKILL after
a grace period. Children run in their own session, so a Ctrl-C in the terminal reaches only this process,
which then stops them in order.
"""
from __future__ import annotations

import logging
import os
import resource
import signal
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from thirdparty.parent_death import die_with_parent as die_with_parent  # re-exported for the scenarios

log = logging.getLogger(__name__)

REPO = Path(__file__).resolve().parent.parent
RESULTS = REPO / "benchmarks" / "results"
LOG_CONFIG = REPO / "conf" / "logging.conf"  # the roles log as in production: INFO, access log at WARNING
READY_TIMEOUT = 20.0
STOP_GRACE = 8.0
CLK_TCK = os.sysconf("SC_CLK_TCK")


def raise_nofile() -> int:
    """Raise this process's open-files soft limit to the hard limit; return the new soft limit."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft != hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    return hard


def _child_setup() -> None:  # runs in the child between fork and exec: no locks, no logging
    raise_nofile()
    die_with_parent()


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def wait_port(port: int, host: str = "127.0.0.1", timeout: float = READY_TIMEOUT) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with socket.create_connection((host, port), timeout=0.5):
                return True
        except OSError:
            time.sleep(0.05)
    return False


def toml(doc: dict[str, Any]) -> str:
    """A minimal TOML writer for our configs: ``{table: {key: str/int/float/bool/list/inline dict}}``."""
    def value(item: Any) -> str:
        if isinstance(item, bool):
            return "true" if item else "false"
        if isinstance(item, (int, float)):
            return repr(item)
        if isinstance(item, str):
            return '"' + item.replace("\\", "\\\\").replace('"', '\\"') + '"'
        if isinstance(item, list):
            return "[" + ", ".join(value(x) for x in item) + "]"
        if isinstance(item, dict):
            return "{" + ", ".join(f"{k} = {value(v)}" for k, v in item.items()) + "}"
        raise TypeError(f"cannot write {item!r} as TOML")

    lines: list[str] = []
    for name, body in doc.items():  # one [table] per entry; a dotted name ("comets.node1") is a sub-table
        lines.append(f"[{name}]")
        lines.extend(f"{key} = {value(item)}" for key, item in body.items())
        lines.append("")
    return "\n".join(lines)


def busy_ticks() -> int:
    """Non-idle CPU ticks of the whole machine so far (/proc/stat: everything but idle and iowait)."""
    fields = [int(x) for x in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    return sum(fields) - fields[3] - fields[4]


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process so far (from /proc/PID/stat)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


@dataclass
class Proc:
    """One started server process and where its output goes."""

    name: str
    popen: subprocess.Popen[bytes]
    log_path: Path

    @property
    def pid(self) -> int:
        return self.popen.pid

    def rss_kb(self) -> int:
        """VmRSS from /proc/PID/status, in KiB."""
        for line in Path(f"/proc/{self.pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
        raise RuntimeError(f"{self.name}: no VmRSS in /proc/{self.pid}/status")

    def cpu_seconds(self) -> float:
        return cpu_seconds(self.pid)

    def log_tail(self, lines: int = 15) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""


@dataclass(frozen=True)
class CometAddrs:
    tcp: int
    ws: int
    rpc: int
    stat: int


class Cluster:
    """Starts servers for one scenario; ``with Cluster() as c: ...`` stops them all on the way out."""

    def __init__(self) -> None:
        self._tmp = tempfile.TemporaryDirectory(prefix="pushcluster-bench-")
        self.dir = Path(self._tmp.name)
        self.procs: list[Proc] = []

    def __enter__(self) -> Cluster:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop_all()
        self._tmp.cleanup()

    def start(self, name: str, argv: list[str], ports: list[int]) -> Proc:
        """Start ``argv`` (cwd = repo root) and wait until every port in ``ports`` accepts connections."""
        log_path = self.dir / f"{name}.log"
        with open(log_path, "wb") as out:
            popen = subprocess.Popen(argv, cwd=REPO, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                     preexec_fn=_child_setup, start_new_session=True)
        proc = Proc(name, popen, log_path)
        self.procs.append(proc)
        for port in ports:
            if popen.poll() is not None or not wait_port(port):
                raise RuntimeError(f"{name} did not start (exit {popen.poll()}):\n{proc.log_tail()}")
        return proc

    def stop(self, proc: Proc) -> None:
        if proc.popen.poll() is None:
            proc.popen.send_signal(signal.SIGTERM)
        try:
            proc.popen.wait(STOP_GRACE)
        except subprocess.TimeoutExpired:
            log.warning("%s pid=%d: no exit %.0f s after SIGTERM, killing", proc.name, proc.pid, STOP_GRACE)
            proc.popen.kill()
            proc.popen.wait()
        if proc in self.procs:
            self.procs.remove(proc)

    def stop_all(self) -> None:
        for proc in reversed(list(self.procs)):
            if proc.popen.poll() is None:
                proc.popen.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + STOP_GRACE
        for proc in reversed(list(self.procs)):
            try:
                proc.popen.wait(max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                log.warning("%s pid=%d: still running after SIGTERM, killing", proc.name, proc.pid)
                proc.popen.kill()
                proc.popen.wait()
        self.procs.clear()

    def _config(self, name: str, doc: dict[str, Any]) -> Path:
        path = self.dir / f"{name}.conf"
        path.write_text(toml(doc))
        return path

    def _role(self, role: str, name: str, doc: dict[str, Any], ports: list[int]) -> Proc:
        path = self._config(name, doc)
        argv = [sys.executable, "-m", role, "-c", str(path), "--log-config", str(LOG_CONFIG)]
        return self.start(name, argv, ports)

    def redis(self) -> tuple[Proc, int]:
        port = free_port()
        argv = ["redis-server", "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
                "--dir", str(self.dir)]
        return self.start("redis", argv, [port]), port

    def message(self, redis_port: int) -> tuple[Proc, int]:
        port = free_port()
        doc = {"rpc": {"bind": f"127.0.0.1:{port}"},
               "storage": {"backend": "redis", "redis": {"r1": f"redis://127.0.0.1:{redis_port}/0"}}}
        return self._role("message", "message", doc, [port]), port

    def comet(self, message_port: int, limits: dict[str, Any] | None = None,
              name: str = "node1", sections: dict[str, dict[str, Any]] | None = None) -> tuple[Proc, CometAddrs]:
        addrs = CometAddrs(free_port(), free_port(), free_port(), free_port())
        doc: dict[str, Any] = {
            "node": {"name": name},
            "bind": {"tcp": [f"127.0.0.1:{addrs.tcp}"], "ws": [f"127.0.0.1:{addrs.ws}"],
                     "rpc": f"127.0.0.1:{addrs.rpc}", "stat": f"127.0.0.1:{addrs.stat}"},
            "message": {"rpc": f"127.0.0.1:{message_port}"},
        }
        if limits:
            doc["limits"] = limits
        doc.update(sections or {})
        proc = self._role("comet", f"comet-{name}", doc, [addrs.tcp, addrs.ws, addrs.rpc, addrs.stat])
        return proc, addrs

    def web(self, message_port: int, comets: dict[str, CometAddrs]) -> tuple[Proc, int, int]:
        public, admin = free_port(), free_port()
        doc: dict[str, Any] = {"public": {"bind": [f"127.0.0.1:{public}"]},
                               "admin": {"bind": [f"127.0.0.1:{admin}"]},
                               "message": {"rpc": f"127.0.0.1:{message_port}"}}
        for name, addrs in comets.items():
            doc[f"comets.{name}"] = {"rpc": [f"127.0.0.1:{addrs.rpc}"], "tcp": [f"127.0.0.1:{addrs.tcp}"],
                                     "ws": [f"127.0.0.1:{addrs.ws}"]}
        return self._role("web", "web", doc, [public, admin]), public, admin

    def stack(self) -> tuple[list[Proc], int, CometAddrs]:
        """Redis, a message node, comet node1 and a web node wired together, as the push scenarios need:
        (processes web-first, the web's admin port, the comet's addresses)."""
        redis, redis_port = self.redis()
        message, message_port = self.message(redis_port)
        comet, addrs = self.comet(message_port)
        web, _, admin_port = self.web(message_port, {"node1": addrs})
        return [web, comet, message, redis], admin_port, addrs

    def baseline(self) -> tuple[Proc, dict[str, int]]:
        """The bare tornado server (benchmarks/baseline.py): TCP, WebSocket and HTTP listeners."""
        ports = {"tcp": free_port(), "ws": free_port(), "http": free_port()}
        argv = [sys.executable, "-m", "benchmarks.baseline", "--tcp", str(ports["tcp"]), "--ws", str(ports["ws"]),
                "--http", str(ports["http"])]
        return self.start("baseline", argv, list(ports.values())), ports


class CpuMeter:
    """CPU use of some processes (name -> pid) over a window, as a percentage of one core; plus ``machine``:
    the whole machine's busy CPU over the same window (200% = both cores of this box saturated)."""

    def __init__(self, pids: dict[str, int]) -> None:
        self.pids = pids
        self._start = time.monotonic()
        self._cpu = {name: cpu_seconds(pid) for name, pid in pids.items()}
        self._busy = busy_ticks()

    def percent(self) -> dict[str, float]:
        elapsed = max(1e-6, time.monotonic() - self._start)
        usage = {name: round(100.0 * (cpu_seconds(pid) - self._cpu[name]) / elapsed, 1)
                 for name, pid in self.pids.items()}
        usage["whole machine (2 cores = 200%)"] = round(100.0 * (busy_ticks() - self._busy) / CLK_TCK / elapsed, 1)
        return usage

