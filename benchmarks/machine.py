"""The machine under test: what it is (cores, RAM, Python, kernel, commit) and how busy others kept it.

The suite shares its 2 cores with whatever else runs on the box (other test runs, builds): ``ForeignLoad``
measures the CPU spent outside the benchmark's own processes during a scenario, so a report says when its
figures were taken on a busy machine.
"""
from __future__ import annotations

import os
import platform
import subprocess
import time
from pathlib import Path
from typing import Any

from benchmarks.harness import CLK_TCK, REPO, busy_ticks


def machine() -> dict[str, Any]:
    """Cores, CPU model, RAM, Python, kernel, git commit and date (written into every result file)."""
    mem_kb = next(int(line.split()[1]) for line in Path("/proc/meminfo").read_text().splitlines()
                  if line.startswith("MemTotal:"))
    cpu = next((line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                if line.startswith("model name")), platform.processor())
    try:
        commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=REPO, capture_output=True, text=True,
                                timeout=5).stdout.strip()
    except OSError:
        commit = ""
    return {"cores": os.cpu_count(), "cpu": cpu, "ram_gib": round(mem_kb / 2**20, 1),
            "python": platform.python_version(), "kernel": platform.release(), "commit": commit,
            "date": time.strftime("%Y-%m-%d %H:%M:%S %z")}


def _own_ticks() -> int:
    """CPU ticks of this process plus its waited-for children (servers and workers, once they have exited)."""
    fields = Path("/proc/self/stat").read_text().rsplit(")", 1)[1].split()
    return sum(int(x) for x in fields[11:15])  # utime, stime, cutime, cstime


class ForeignLoad:
    """CPU the machine spent outside this benchmark's processes during a scenario, in % of one core.

    This machine may be shared (other test runs, builds): every figure of a scenario that ran while something
    else used the CPU is low. Read it after every child has exited, so their CPU is in cutime/cstime.
    Unattributed kernel work (softirq for loopback traffic) counts as foreign too, so a few % is normal.
    """

    def __init__(self) -> None:
        self._start = time.monotonic()
        self._busy = busy_ticks()
        self._own = _own_ticks()

    def percent(self) -> float:
        """Average foreign CPU since this meter was made, % of one core."""
        elapsed = max(1e-6, time.monotonic() - self._start)
        foreign = (busy_ticks() - self._busy) - (_own_ticks() - self._own)
        return round(100.0 * max(0, foreign) / CLK_TCK / elapsed, 1)


def wait_quiet(timeout: float, threshold: float = 15.0) -> float:
    """Wait (up to ``timeout`` s) for a second in which the machine's busy CPU is below ``threshold`` % of a
    core; return the last reading. Nothing of ours runs while waiting, so all of it is other work."""
    deadline = time.monotonic() + timeout
    while True:
        before = busy_ticks()
        time.sleep(1.0)
        busy = 100.0 * (busy_ticks() - before) / CLK_TCK
        if busy < threshold or time.monotonic() + 1.0 > deadline:
            return busy


def speed_probe(seconds: float = 0.3) -> float:
    """Thousands of iterations per second of a fixed pure-Python loop (JSON round trip of a small message).

    The VM's speed drifts (its host is shared, and steal time does not show): runs on the same day differed by
    1.6x with the bare baselines moving in step. This figure, taken before each scenario, tells two runs apart.
    """
    import json

    doc = {"msg": {"title": "hello", "n": 42}, "mid": 17005481234567890, "gid": 0}
    count, start = 0, time.perf_counter()
    while time.perf_counter() - start < seconds:
        for _ in range(200):
            json.loads(json.dumps(doc))
        count += 200
    return count / (time.perf_counter() - start) / 1000
