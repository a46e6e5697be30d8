"""The body of one load-generator process: an event loop (uvloop) obeying commands from the parent's pipe.

Commands are dicts ``{"op": ..., ...}`` answered with ``{"op": "result", ...}`` (or ``{"op": "error", ...}``);
long commands also send ``{"op": "progress", "n": N}``. The process ignores Ctrl-C (the parent stops it),
raises its open-files soft limit to the hard one, and gets SIGKILL if the parent dies.
"""
from __future__ import annotations

import asyncio
import signal
import threading
import time
import traceback
from multiprocessing.connection import Connection
from typing import Any

from benchmarks.fleet import Fleet
from benchmarks.harness import die_with_parent, raise_nofile
from benchmarks.httpclient import closed_loop, httpx_closed_loop, open_loop
from benchmarks.rpcload import rpc_closed_loop
from benchmarks.subclient import RECORDER
from thirdparty.runtime import loop_factory


class Worker:
    def __init__(self, pipe: Connection, index: int) -> None:
        self.pipe = pipe
        self.index = index
        self.fleet = Fleet()

    def progress(self, count: int) -> None:
        if count:
            self.pipe.send({"op": "progress", "n": count})

    async def serve(self) -> None:
        loop = asyncio.get_running_loop()
        commands: asyncio.Queue[dict[str, Any] | None] = asyncio.Queue()

        def read_commands() -> None:  # a thread: the pipe stays blocking (an event loop reader would not)
            while True:
                try:
                    command = self.pipe.recv()
                except (EOFError, OSError):
                    command = None
                loop.call_soon_threadsafe(commands.put_nowait, command)
                if command is None or command["op"] == "stop":
                    return

        threading.Thread(target=read_commands, name="commands", daemon=True).start()
        while True:
            command = await commands.get()
            if command is None or command["op"] == "stop":
                await self.fleet.close_all()
                return
            try:
                result = await self.run(command)
            except Exception:  # noqa: BLE001 - reported to the parent, which fails the scenario
                self.pipe.send({"op": "error", "error": traceback.format_exc()})
            else:
                self.pipe.send({"op": "result", **result})

    async def run(self, command: dict[str, Any]) -> dict[str, Any]:
        op = command["op"]
        if op == "clock":
            return {"mono_ns": time.monotonic_ns()}
        if op == "connect":
            return await self.fleet.open(
                [tuple(t) for t in command["targets"]], command["keys"], command["sources"],
                command["heartbeat"], command["concurrency"], command["timeout"], self.progress)
        if op == "heartbeats":
            self.fleet.start_heartbeats(command["period"])
            return {}
        if op == "reset":
            RECORDER.reset(command.get("since_ns", 0))
            return {}
        if op == "collect":
            snapshot = RECORDER.snapshot()
            if not command.get("samples", True):
                snapshot["samples"] = []
            if command.get("reset"):
                RECORDER.reset()
            return snapshot
        if op == "status":
            return self.fleet.status()
        if op == "close":
            return {"held": await self.fleet.close_all()}
        if op == "http":
            host, port = command["host"], command["port"]
            if command.get("client") == "rpc":
                return await rpc_closed_loop(f"{host}:{port}", command["spec"], command["conns"], command["warmup"],
                                             command["duration"])
            if command.get("client") == "httpx":
                return await httpx_closed_loop(command["spec"], host, port, command["conns"], command["warmup"],
                                               command["duration"])
            if command.get("rate"):
                return await open_loop(command["spec"], host, port, command["conns"], command["rate"],
                                       command["warmup"], command["duration"])
            return await closed_loop(command["spec"], host, port, command["conns"], command["warmup"],
                                     command["duration"])
        raise ValueError(f"unknown op {op!r}")


def main(pipe: Connection, index: int) -> None:
    """Process entry point (multiprocessing target)."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    die_with_parent(signal.SIGKILL)
    raise_nofile()
    with asyncio.Runner(loop_factory=loop_factory()) as runner:  # uvloop, as the roles
        runner.run(Worker(pipe, index).serve())
