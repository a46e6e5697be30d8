"""Process runtime shared by every role's entry point: logging set-up and the run/stop life cycle.

:Status: used by ``comet/__main__.py``, ``web/__main__.py``, ``message/__main__.py`` and ``pushcluster.py``.

``run_node`` follows the uvicorn/rq pattern: start the node (a failure to start exits with
``STARTUP_FAILURE``), wait for SIGTERM or SIGINT, then stop it gracefully; a second signal while stopping
exits at once.
"""
from __future__ import annotations

import argparse
import asyncio
import gc
import logging
import logging.config
import os
import signal
from typing import Callable, Protocol, Sequence, TypeVar

log = logging.getLogger(__name__)

STARTUP_FAILURE = 3
HANDLED_SIGNALS = (signal.SIGINT, signal.SIGTERM)
C = TypeVar("C")
DEFAULT_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


class Node(Protocol):
    """Anything with an async start/stop life cycle: a role node, or several of them (standalone)."""

    async def start(self) -> None: ...

    async def stop(self) -> None: ...


def setup_logging(path: str | None, level: str = "INFO") -> None:
    """Configure logging from a ``logging.config.fileConfig`` file, or a one-line format on stderr."""
    if path:
        if not os.path.exists(path):
            raise FileNotFoundError(f"logging config {path!r} does not exist")
        logging.config.fileConfig(path, disable_existing_loggers=False)
        return
    logging.basicConfig(level=level, format=DEFAULT_FORMAT)
    logging.getLogger("web.access").setLevel(logging.WARNING)  # as conf/logging.conf: only 4xx/5xx lines


async def serve(node: Node, stop: asyncio.Event | None = None) -> int:
    """Start ``node``, wait for a stop signal (or ``stop`` being set), stop it; return an exit code."""
    loop = asyncio.get_running_loop()
    stop = stop or asyncio.Event()
    signals_seen = 0

    def on_signal(signum: int) -> None:
        nonlocal signals_seen
        signals_seen += 1
        if signals_seen == 1:
            log.info("signal %s: stopping gracefully (send it again to exit at once)",
                     signal.Signals(signum).name)
            stop.set()
        else:
            log.warning("signal %s again: exiting at once", signal.Signals(signum).name)
            os._exit(1)

    for signum in HANDLED_SIGNALS:
        loop.add_signal_handler(signum, on_signal, signum)
    try:
        try:
            await node.start()
        except Exception as exc:  # noqa: BLE001 - any start failure is reported the same way
            log.error("could not start: %s", exc, exc_info=not isinstance(exc, OSError))
            await _stop_quietly(node)
            return STARTUP_FAILURE
        # What start-up built lives as long as the process: move it out of the collector's sight, so that full
        # collections (measured 37 ms each, several a minute under load) walk only what serving allocates.
        gc.collect()
        gc.freeze()
        await stop.wait()
        await node.stop()
        log.info("stopped")
        return 0
    finally:
        for signum in HANDLED_SIGNALS:
            loop.remove_signal_handler(signum)


async def _stop_quietly(node: Node) -> None:
    try:
        await node.stop()
    except Exception:  # noqa: BLE001 - a half-started node may fail to stop; the start error is the news
        log.debug("stop after a failed start also failed", exc_info=True)


def loop_factory() -> Callable[[], asyncio.AbstractEventLoop] | None:
    """uvloop's loop when it is installed (it is a dependency on Linux) unless PUSHCLUSTER_LOOP=asyncio; else None."""
    if os.environ.get("PUSHCLUSTER_LOOP", "") == "asyncio":
        return None
    try:
        import uvloop
    except ImportError:
        return None
    return uvloop.new_event_loop


def run_node(node: Node) -> int:
    """Run ``node`` on a new event loop (uvloop when installed) until SIGTERM/SIGINT; return the exit code."""
    factory = loop_factory()
    log.info("event loop: %s", "uvloop" if factory else "asyncio")
    with asyncio.Runner(loop_factory=factory) as runner:
        return runner.run(serve(node))


CONFIG_ERROR = 2


def logging_from_args(parser: argparse.ArgumentParser, path: str | None) -> None:
    """``setup_logging(path)``, turning a bad ``--log-config`` file into the parser's usage error."""
    try:
        setup_logging(path)
    except (OSError, ValueError, KeyError) as exc:
        parser.error(f"--log-config {path}: {exc}")


def role_main(role: str, load: Callable[[str | None], C], make_node: Callable[[C], Node],
              argv: Sequence[str] | None) -> int:
    """The whole entry point of one role: ``-c/--config``, ``--log-config``, load, run until a signal.

    Returns 0 after a clean stop, ``CONFIG_ERROR`` for a bad config (logged once, naming the key) and
    ``STARTUP_FAILURE`` when the node could not start.
    """
    parser = argparse.ArgumentParser(prog=f"pushcluster {role}", description=f"pushcluster {role} node")
    parser.add_argument("-c", "--config", metavar="PATH", help="TOML config (default: built-in defaults)")
    parser.add_argument("--log-config", metavar="PATH", help="logging.config.fileConfig file")
    args = parser.parse_args(argv)
    logging_from_args(parser, args.log_config)
    try:
        config = load(args.config)
    except (ValueError, OSError) as exc:  # ConfigError is a ValueError; OSError: the file cannot be read
        logging.getLogger(role).error("config %s: %s", args.config or "(defaults)", exc)
        return CONFIG_ERROR
    return run_node(make_node(config))
