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
