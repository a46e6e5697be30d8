"""Role nodes as real OS processes (``python -m <role> -c <file>``), for the tests that SIGKILL one."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]


def toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return repr(value)
    if isinstance(value, str):
        return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'
    if isinstance(value, list):
        return "[" + ", ".join(toml_value(item) for item in value) + "]"
    if isinstance(value, dict):
        return "{" + ", ".join(f'"{key}" = {toml_value(item)}' for key, item in value.items()) + "}"
    raise TypeError(f"no TOML for {value!r}")


def to_toml(config: dict[str, dict[str, Any]]) -> str:
    """``{section: {key: value}}`` as a TOML document (one level of tables, inline tables below)."""
    lines = []
    for section, values in config.items():
        lines.append(f"[{section}]")
        lines.extend(f"{key} = {toml_value(value)}" for key, value in values.items())
    return "\n".join(lines) + "\n"


class RoleProcess:
    """One role node in a child process; its log goes to ``<dir>/<name>.log``."""

    def __init__(self, role: str, name: str, config: dict[str, dict[str, Any]], directory: Path) -> None:
        self.role, self.name = role, name
        self.config_path = directory / f"{name}.toml"
        self.log_path = directory / f"{name}.log"
        self.config_path.write_text(to_toml(config))
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        env = {**os.environ, "PYTHONPATH": str(ROOT), "PUSHCLUSTER_LOOP": "asyncio"}
        with open(self.log_path, "ab") as log:
            self.proc = subprocess.Popen([sys.executable, "-m", self.role, "-c", str(self.config_path)],
                                         cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT)

    def kill(self) -> None:
        """SIGKILL: no deregistration, no goodbye; the OS closes its sockets."""
        self._signal(signal.SIGKILL)

    def terminate(self) -> int:
        """SIGTERM and wait: a graceful stop; the exit code."""
        self._signal(signal.SIGTERM)
        return self.proc.wait(15) if self.proc is not None else 0

    def _signal(self, signum: int) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signum)
            self.proc.wait(15)

    def close(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(15)

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""


def tracebacks(processes: list[RoleProcess]) -> dict[str, str]:
    """``{process name: its log}`` for every process whose log holds a Python traceback (an expected fault must be
    logged as one clear line, never with a traceback)."""
    logs = {process.name: process.log() for process in processes}
    return {name: text for name, text in logs.items() if "Traceback (most recent call last)" in text}


# -- additions for the fault and soak tests (tests/chaos, tests/soak) --------------------------------------------

def pid_of(process: RoleProcess) -> int:
    """The OS pid of a started process."""
    assert process.proc is not None, f"{process.name} was never started"
    return process.proc.pid


def send_signal(process: RoleProcess, signum: int) -> None:
    """Send ``signum`` and return at once (RoleProcess.kill / terminate wait for the exit)."""
    if process.proc is not None and process.proc.poll() is None:
        process.proc.send_signal(signum)


def exit_code(process: RoleProcess, timeout: float) -> int | None:
    """The exit code, waiting up to ``timeout`` seconds for it; None if the process still runs."""
    if process.proc is None:
        return None
    try:
        return process.proc.wait(timeout)
    except subprocess.TimeoutExpired:
        return None


def open_fds(pid: int) -> int:
    """How many file descriptors process ``pid`` has open (Linux /proc)."""
    return len(os.listdir(f"/proc/{pid}/fd"))


def rss_kib(pid: int) -> int:
    """Resident set size of process ``pid`` in KiB (Linux /proc)."""
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise RuntimeError(f"no VmRSS for pid {pid}")


class CommandProcess(RoleProcess):
    """A process started as ``python -m <module> <args>`` (e.g. ``pushcluster standalone ...``), logged like a
    RoleProcess (its ``config`` file is written but not passed)."""

    def __init__(self, module: str, name: str, args: list[str], directory: Path) -> None:
        super().__init__(module, name, {}, directory)
        self.args = list(args)

    def start(self) -> None:
        env = {**os.environ, "PYTHONPATH": str(ROOT), "PUSHCLUSTER_LOOP": "asyncio"}
        with open(self.log_path, "ab") as log:
            self.proc = subprocess.Popen([sys.executable, "-m", self.role, *self.args],
                                         cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT)
