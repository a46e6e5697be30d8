"""The load generator seen from the scenario: a pool of worker processes driven over pipes.

Each worker (``benchmarks.worker``) runs its own event loop, so the generator uses several cores and several
processes' open-file budgets. Every call has a deadline: a worker that does not answer in time fails the
scenario, and leaving the ``with`` block stops (then kills) every worker. Progress goes to a tqdm bar on stderr.
"""
from __future__ import annotations

import itertools
import multiprocessing
import sys
import time
from multiprocessing.connection import Connection, wait
from typing import Any, Iterator, Sequence, TypeVar

import tqdm  # type: ignore[import-untyped]

from benchmarks import worker

tqdm.tqdm.monitor_interval = 0  # no monitor thread: the harness forks children with a preexec_fn
T = TypeVar("T")
START_TIMEOUT = 30.0


class WorkerError(RuntimeError):
    """A worker failed a command, died, or missed its deadline."""


def _source_addresses() -> Iterator[str]:
    """127.0.0.2, 127.0.0.3, ... 127.0.0.254, 127.0.1.1, ...: fresh loopback source addresses for each run."""
    for third in range(0, 256):
        for fourth in range(2 if third == 0 else 1, 255):
            yield f"127.0.{third}.{fourth}"


_SOURCES = _source_addresses()


def take_sources(count: int) -> list[str]:
    """``count`` loopback source addresses no earlier run of this process used (ports in TIME_WAIT stay there)."""
    return list(itertools.islice(_SOURCES, count))


def split(items: Sequence[T], parts: int) -> list[list[T]]:
    """Deal ``items`` round-robin into ``parts`` lists."""
    return [list(items[index::parts]) for index in range(parts)]


class WorkerPool:
    """``count`` worker processes; ``call`` sends one command to each and collects the results."""

    def __init__(self, count: int) -> None:
        context = multiprocessing.get_context("spawn")
        self.pipes: list[Connection] = []
        self.processes: list[multiprocessing.process.BaseProcess] = []
        for index in range(count):
            parent, child = context.Pipe()
            process = context.Process(target=worker.main, args=(child, index), daemon=True,
                                      name=f"loadgen-{index}")
            process.start()
            child.close()
            self.pipes.append(parent)
            self.processes.append(process)

    def __enter__(self) -> WorkerPool:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @property
    def size(self) -> int:
        return len(self.pipes)

    def pids(self) -> list[int]:
        return [p.pid for p in self.processes if p.pid is not None]

    def call(self, commands: Sequence[dict[str, Any] | None], timeout: float, total: int = 0, desc: str = "",
             seconds: float = 0.0) -> list[dict[str, Any]]:
        """Send ``commands[i]`` to worker i (None: skip it); return the results in worker order.

        A bar counts ``total`` progress units reported by the workers, or ``seconds`` of wall time.
        """
        pending: dict[Connection, int] = {}
        for index, command in enumerate(commands):
            if command is not None:
                self.pipes[index].send(command)
                pending[self.pipes[index]] = index
        results: dict[int, dict[str, Any]] = {}
        show = bool(desc) and (total > 0 or seconds > 1.0)
        bar = tqdm.tqdm(total=total or round(seconds), desc=desc, file=sys.stderr, leave=False, disable=not show,
                        unit="" if total else "s", dynamic_ncols=True)
        start = time.monotonic()
        deadline = start + timeout
        try:
            while pending:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise WorkerError(f"load generator: no answer within {timeout:.0f} s ({desc or commands})")
                for pipe in wait(list(pending), timeout=min(remaining, 0.5)):
                    assert isinstance(pipe, Connection)
                    try:
                        message = pipe.recv()
                    except (EOFError, OSError):
                        process = self.processes[pending[pipe]]
                        process.join(1.0)
                        raise WorkerError(f"load generator worker {pending[pipe]} died "
                                          f"(exit code {process.exitcode})") from None
                    if message["op"] == "progress":
                        bar.update(message["n"])
                    elif message["op"] == "error":
                        raise WorkerError(f"worker {pending[pipe]} failed:\n{message['error']}")
                    else:
                        results[pending.pop(pipe)] = message
                if seconds and not total:
                    bar.n = min(round(seconds), int(time.monotonic() - start))
                    bar.refresh()
        finally:
            bar.close()
        return [results[index] for index in sorted(results)]

    def broadcast(self, command: dict[str, Any], timeout: float = 30.0) -> list[dict[str, Any]]:
        return self.call([command] * self.size, timeout)

    def check_clock(self) -> int:
        """Check that time.monotonic_ns() is one clock across processes; return the widest bracket in ns.

        Each worker's reading must fall between this process's readings before the request and after the
        reply; if CLOCK_MONOTONIC were per process, this fails.
        """
        widest = 0
        rounds = [*enumerate(self.pipes), *enumerate(self.pipes)]  # round 1 waits for start-up; round 2 counts
        for turn, (index, pipe) in enumerate(rounds):
            before = time.monotonic_ns()
            pipe.send({"op": "clock"})
            if not pipe.poll(START_TIMEOUT):
                raise WorkerError(f"worker {index} did not start")
            reply = pipe.recv()
            after = time.monotonic_ns()
            if not before <= reply["mono_ns"] <= after:
                raise WorkerError(f"worker {index}: monotonic clock not shared ({before} {reply['mono_ns']} {after})")
            if turn >= len(self.pipes):
                widest = max(widest, after - before)
        return widest

    def close(self) -> None:
        for pipe in self.pipes:
            try:
                pipe.send({"op": "stop"})
            except OSError:
                pass
        deadline = time.monotonic() + 5.0
        for process in self.processes:
            process.join(max(0.1, deadline - time.monotonic()))
            if process.is_alive():
                process.kill()
                process.join(2.0)
        for pipe in self.pipes:
            pipe.close()
        self.pipes, self.processes = [], []
