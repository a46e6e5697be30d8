"""``pushcluster cluster``: a whole cluster on loopback, every part a child process of one supervisor.

:Status: used by ``pushcluster.py`` (the ``cluster`` subcommand).

What runs is laid out by ``local_cluster_plan.py`` from a conf dir (``conf/cluster/``): ZooKeeper
(``thirdparty/zk_server.py``), one ``redis-server`` per shard with AOF persistence, then every role as
``python -m <role> -c <name>.conf`` (the roles are not imported here). Stage by stage, each process is started and
waited for: its listeners accept connections, ZooKeeper answers ``srvr``, Redis answers ``PING``, and a message or
comet node's znode has appeared (the supervisor follows ``<root>/comet`` and ``<root>/message`` with its own
ZooKeeper session, and removes at start the registrations a previous run left behind, which a restarted ZooKeeper
keeps until their sessions expire). Then :func:`run` hands the summary to its caller to print.

Every line a child writes goes to this process's stderr, prefixed with the child's name. A child that dies is
reported once, with its exit code or signal, and the others keep running (kill the active comet of a name to see
its standby take over: the supervisor logs it). SIGTERM or SIGINT stops the children in reverse role order (web,
comets, message nodes, Redis, ZooKeeper), each with SIGTERM then SIGKILL after ``stop_grace``, and :func:`run`
returns 0; a second signal SIGKILLs whatever still runs and returns 1. Children run in their own session (a Ctrl-C
in the terminal reaches only the supervisor, which stops them in order) and get SIGTERM, all at once, if the
supervisor dies, even by SIGKILL (``PR_SET_PDEATHSIG``): Redis still writes its AOF out.
"""
from __future__ import annotations

import asyncio
import contextlib
import fcntl
import logging
import os
import signal
import sys
from pathlib import Path
from typing import BinaryIO, Callable, Iterator

from kazoo.exceptions import KazooException

from thirdparty.confload import ConfigError
from thirdparty.local_cluster_plan import Child, Plan, install_hint, load_plan, missing_programs
from thirdparty.local_cluster_state import ClusterState, busy_binds, describe_exit, probe
from thirdparty.parent_death import pdeathsig_preexec
from thirdparty.runtime import CONFIG_ERROR, HANDLED_SIGNALS, STARTUP_FAILURE
from thirdparty.zk import ZkUnavailable

log = logging.getLogger(__name__)

SOURCE_ROOT = Path(__file__).resolve().parents[1]   # so that `python -m <role>` finds this very code
POLL_INTERVAL = 0.05
LINE_LIMIT = 1 << 20


class ClusterError(Exception):
    """The cluster cannot run (nothing was started, or what was has been stopped); ``code`` is the exit code."""

    def __init__(self, message: str, code: int = STARTUP_FAILURE) -> None:
        super().__init__(message)
        self.code = code


class Running:
    """One started child: its process, the task copying its output, the task waiting for its exit."""

    def __init__(self, child: Child, proc: asyncio.subprocess.Process) -> None:
        self.child, self.proc = child, proc
        self.pump: asyncio.Task[None] | None = None
        self.exited: asyncio.Task[None] | None = None


class LocalCluster:
    """Starts the children of a :class:`Plan` stage by stage, reports deaths, stops them in reverse order."""

    def __init__(self, plan: Plan, output: BinaryIO) -> None:
        self.plan = plan
        self.state = ClusterState(plan)
        self._out: BinaryIO | None = output
        self._running: dict[str, Running] = {}
        self._stopping = False
        self._hurry = asyncio.Event()
        self._width = max(len(child.name) for child in plan.children)
        self._env = {**os.environ, "PYTHONPATH": os.pathsep.join(
            [str(SOURCE_ROOT), *filter(None, [os.environ.get("PYTHONPATH")])])}

    def pids(self) -> dict[str, int]:
        return {name: running.proc.pid for name, running in self._running.items()}

    def summary(self) -> str:
        return self.state.summary(self.pids())

    async def start(self) -> None:
        """Start every stage and wait until it is ready; ClusterError (after which :meth:`stop` cleans up)."""
        timeout = self.plan.config.supervisor.ready_timeout
        for stage in self.plan.stages:
            for child in stage:
                await self._spawn(child)
            await self._wait_ready(stage, timeout)
            if stage[0].kind == "zookeeper":
                try:
                    await self.state.follow(timeout)
                except (ZkUnavailable, KazooException) as exc:
                    raise ClusterError(f"cannot follow ZooKeeper: {type(exc).__name__}: {exc}") from None

    async def stop(self) -> None:
        """Stop every child in reverse role order; a child still running after the grace gets SIGKILL."""
        self._stopping = True
        self.state.stopping = True
        for group in self.plan.stop_groups():
            if group and group[0].kind == "zookeeper":
                await self.state.close()
            await self._stop_group([self._running[c.name] for c in group if c.name in self._running])
        await self.state.close()

    def hurry(self) -> None:
        """Skip the grace: SIGKILL what still runs, now and in the groups still to stop."""
        self._hurry.set()

    async def _spawn(self, child: Child) -> None:
        try:
            proc = await asyncio.create_subprocess_exec(
                *child.argv, stdin=asyncio.subprocess.DEVNULL, stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.STDOUT, env=self._env, start_new_session=True,
                preexec_fn=pdeathsig_preexec(signal.SIGTERM), limit=LINE_LIMIT)
        except OSError as exc:
            raise ClusterError(f"{child.name}: cannot run {child.argv[0]}: {exc.strerror or exc}") from None
        running = self._running[child.name] = Running(child, proc)
        running.pump = asyncio.create_task(self._pump(running), name=f"output {child.name}")
        running.exited = asyncio.create_task(self._report_exit(running), name=f"exit {child.name}")
        log.info("%s pid=%d: started: %s", child.name, proc.pid, " ".join(child.argv))

    async def _pump(self, running: Running) -> None:
        """Copy the child's output lines, prefixed with its name, until it closes it."""
        prefix = f"{running.child.name:<{self._width}} | ".encode()
        stream = running.proc.stdout
        assert stream is not None
        while True:
            try:
                line = await stream.readline()
            except ValueError:  # longer than LINE_LIMIT: asyncio dropped it
                line = b"(a line longer than 1 MiB was dropped)\n"
            if not line:
                return
            if self._out is not None:
                try:
                    self._out.write(prefix + line if line.endswith(b"\n") else prefix + line + b"\n")
                    self._out.flush()
                except (OSError, ValueError):  # our stderr is gone: keep draining so the child never blocks
                    self._out = None

    async def _report_exit(self, running: Running) -> None:
        code = await running.proc.wait()
        if running.pump is not None:
            await asyncio.wait({running.pump}, timeout=1.0)   # its last lines first
        if not self._stopping:
            log.error("%s pid=%d: %s unexpectedly; the other processes keep running", running.child.name,
                      running.proc.pid, describe_exit(code))

    async def _wait_ready(self, stage: tuple[Child, ...], timeout: float) -> None:
        loop = asyncio.get_running_loop()
        deadline, pending = loop.time() + timeout, list(stage)
        while pending:
            for child in list(pending):
                running = self._running[child.name]
                code = running.proc.returncode
                if code is not None:
                    config_error = child.role is not None and code == CONFIG_ERROR
                    raise ClusterError(f"{child.name} {describe_exit(code)} before it was ready (its lines are "
                                       "above)", CONFIG_ERROR if config_error else STARTUP_FAILURE)
                if self.state.registered(child) and await probe(child):
                    pending.remove(child)
                    log.info("%s pid=%d: ready", child.name, running.proc.pid)
            if pending:
                if loop.time() > deadline:
                    raise ClusterError(f"{', '.join(c.name for c in pending)}: not ready after {timeout:g} s")
                await asyncio.sleep(POLL_INTERVAL)

    async def _stop_group(self, group: list[Running]) -> None:
        alive = [running for running in group if running.proc.returncode is None]
        for running in alive:
            with contextlib.suppress(ProcessLookupError):
                running.proc.send_signal(signal.SIGKILL if self._hurry.is_set() else signal.SIGTERM)
        exits = {running.exited for running in alive if running.exited is not None}
        hurry = asyncio.create_task(self._hurry.wait())
        try:
            loop = asyncio.get_running_loop()
            deadline = loop.time() + self.plan.config.supervisor.stop_grace
            while exits and not self._hurry.is_set() and loop.time() < deadline:
                done, _ = await asyncio.wait(exits | {hurry}, timeout=deadline - loop.time(),
                                             return_when=asyncio.FIRST_COMPLETED)
                exits -= done
        finally:
            hurry.cancel()
        for running in alive:
            if running.proc.returncode is None:
                log.warning("%s pid=%d: still running, SIGKILL", running.child.name, running.proc.pid)
                with contextlib.suppress(ProcessLookupError):
                    running.proc.kill()
        for running in alive:
            code = await running.proc.wait()
            if running.exited is not None:
                await running.exited
            log.info("%s pid=%d: stopped (%s)", running.child.name, running.proc.pid, describe_exit(code))


async def supervise(plan: Plan, announce: Callable[[str], None], output: BinaryIO) -> int:
    """Run the cluster until SIGTERM/SIGINT; ClusterError if it could not start. Returns the exit code."""
    cluster = LocalCluster(plan, output)
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    signals_seen = 0

    def on_signal(signum: int) -> None:
        nonlocal signals_seen
        signals_seen += 1
        name = signal.Signals(signum).name
        if signals_seen == 1:
            log.info("signal %s: stopping the cluster (send it again to SIGKILL everything at once)", name)
            stop.set()
        else:
            log.warning("signal %s again: SIGKILL to every process still running", name)
            cluster.hurry()

    for signum in HANDLED_SIGNALS:
        loop.add_signal_handler(signum, on_signal, signum)
    starting = asyncio.create_task(cluster.start(), name="start cluster")
    stopping = asyncio.create_task(stop.wait(), name="wait for a signal")
    try:
        await asyncio.wait({starting, stopping}, return_when=asyncio.FIRST_COMPLETED)
        if starting.done():
            starting.result()   # raises ClusterError if the start failed
            announce(cluster.summary())
            await stopping
        else:
            starting.cancel()
            await asyncio.gather(starting, return_exceptions=True)
    finally:
        stopping.cancel()
        await cluster.stop()
        for signum in HANDLED_SIGNALS:
            loop.remove_signal_handler(signum)
    return 0 if signals_seen < 2 else 1


@contextlib.contextmanager
def data_dir_lock(data_dir: Path) -> Iterator[None]:
    """Hold ``<data-dir>/lock`` so that two supervisors never share one data dir; ClusterError if taken."""
    data_dir.mkdir(parents=True, exist_ok=True)
    with open(data_dir / "lock", "a+", encoding="ascii") as lock:
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            lock.seek(0)
            raise ClusterError(f"{data_dir} is in use by another pushcluster cluster (pid {lock.read().strip()}); "
                               "stop it, or pass another --data-dir") from None
        lock.seek(0)
        lock.truncate()
        lock.write(f"{os.getpid()}\n")
        lock.flush()
        yield


def run(conf_dir: Path, data_dir: Path, port_base: int, announce: Callable[[str], None],
        output: BinaryIO | None = None) -> int:
    """Check, lay out and run a local cluster until a signal; ClusterError (exit code 2 or 3) before it starts."""
    try:
        plan = load_plan(conf_dir, data_dir, port_base)
    except ConfigError as exc:
        raise ClusterError(str(exc), CONFIG_ERROR) from None
    missing = missing_programs()
    if missing:
        raise ClusterError("; ".join(missing) + "; " + install_hint(), CONFIG_ERROR)
    with data_dir_lock(plan.data_dir):
        busy = busy_binds(plan)
        if busy:
            raise ClusterError("in use: " + ", ".join(f"{address} ({name})" for name, address in busy) +
                               "; is another cluster running? --port-base moves every port")
        for path, text in plan.files.items():
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(text, encoding="utf-8")
        (plan.data_dir / "zookeeper" / "data").mkdir(parents=True, exist_ok=True)
        return asyncio.run(supervise(plan, announce, output or sys.stderr.buffer))
