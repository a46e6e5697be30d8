"""``pushcluster listen KEY``: subscribe to one key and print its messages as they arrive, one JSON line each.

::

    pushcluster listen alice --web http://127.0.0.1:8090 [--proto tcp|ws] [--from-mid N] [--pmid N|none]
                             [--token T] [--tls] [--cafile PEM] [--no-ack]
    {"mid":17005481234567890,"msg":{"title":"hello"}}
    {"mid":17005481234567999,"gid":1,"msg":{"title":"to everyone"}}

Each line is ``{"mid": N, "msg": <the pushed JSON>}`` on stdout (the JSON byte for byte, unless it spans several
lines: then it is re-encoded compactly); a public message (broadcast) has ``"gid":1`` too. ``--from-mid 0`` (the
default) first prints every stored message; give the last mid printed to resume after it. ``--pmid`` is the same
for public messages (default 0: every stored one; ``none``: fetch none, print only those broadcast while
listening). Messages are acknowledged to the comet as they are printed unless ``--no-ack``. Gaps (messages
trimmed on the server) and the final error go to stderr.
Ctrl-C or SIGTERM ends it with exit code 0; a fatal error (token refused, key refused) with 1; bad arguments
with 2. Runs as ``python -m comet.subscriber_cli`` too.
"""
from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import signal
import ssl
import sys
from typing import BinaryIO

from comet.subscriber import Gap, Subscriber
from comet.subscriber_api import GID_PRIVATE, Message

DEFAULT_WEB = "http://127.0.0.1:8090"


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="pushcluster listen",
                                     description="Print the messages of one key as JSON lines.")
    parser.add_argument("key", help="the subscriber key")
    parser.add_argument("--web", default=DEFAULT_WEB, help=f"web node public URL (default {DEFAULT_WEB})")
    parser.add_argument("--proto", choices=("tcp", "ws"), default="tcp", help="comet transport (default tcp)")
    parser.add_argument("--from-mid", type=int, default=0, metavar="N",
                        help="print stored messages after this mid first (default 0: all stored)")
    parser.add_argument("--pmid", type=_pmid, default=0, metavar="N|none",
                        help="print stored public messages after this public mid first (default 0: all stored; "
                             "none: no stored public message)")
    parser.add_argument("--no-ack", action="store_true", help="do not acknowledge the messages to the comet")
    parser.add_argument("--token", default=os.environ.get("PUSHCLUSTER_SUB_TOKEN"),
                        help="subscribe token (default $PUSHCLUSTER_SUB_TOKEN)")
    parser.add_argument("--heartbeat", type=int, default=30, help="heartbeat seconds (default 30)")
    parser.add_argument("--tls", action="store_true", help="the comet speaks TLS (wss:// for --proto ws)")
    parser.add_argument("--cafile", help="PEM certificates to trust for TLS (default: the system's)")
    parser.add_argument("-v", "--verbose", action="store_true", help="log connections and reconnects to stderr")
    return parser


def _pmid(text: str) -> int | None:
    if text == "none":
        return None
    if not text.isdigit() or len(text) > 19:
        raise argparse.ArgumentTypeError(f"not a public mid (digits) or 'none': {text!r}")
    return int(text)


def message_line(message: Message) -> bytes:
    """``{"mid":N,"msg":<raw JSON>}`` (``"gid":G`` after the mid unless 0) and a newline; the JSON re-encoded only
    if it holds a line break."""
    raw = message.raw
    if b"\n" in raw or b"\r" in raw:
        raw = json.dumps(message.value, ensure_ascii=False, separators=(",", ":")).encode("utf-8")
    if message.gid != GID_PRIVATE:
        return b'{"mid":%d,"gid":%d,"msg":%b}\n' % (message.mid, message.gid, raw)
    return b'{"mid":%d,"msg":%b}\n' % (message.mid, raw)


async def _listen(args: argparse.Namespace, out: BinaryIO) -> int:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop.set)

    def on_message(message: Message) -> None:
        try:
            out.write(message_line(message))
            out.flush()
        except BrokenPipeError:   # the reader went away (| head): stop quietly
            stop.set()

    def on_gap(gap: Gap) -> None:
        kind = "public messages" if gap.gid != GID_PRIVATE else "messages"
        sys.stderr.write(f"pushcluster listen: gap: {kind} after mid {gap.after_mid} were trimmed on the server\n")

    context = ssl.create_default_context(cafile=args.cafile) if args.cafile else None
    subscriber = Subscriber(args.web, args.key, proto=args.proto, heartbeat=args.heartbeat, token=args.token,
                            last_mid=args.from_mid, last_pmid=args.pmid, ack=not args.no_ack,
                            on_message=on_message, on_gap=on_gap, tls=args.tls,
                            ssl_context=context)
    await subscriber.start()
    closed = asyncio.create_task(subscriber.wait_closed())
    stopped = asyncio.create_task(stop.wait())
    try:
        await asyncio.wait({closed, stopped}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        await subscriber.close()
        stopped.cancel()
        await asyncio.gather(closed, stopped, return_exceptions=True)
        for signum in (signal.SIGINT, signal.SIGTERM):
            loop.remove_signal_handler(signum)
    if subscriber.error is not None:
        sys.stderr.write(f"pushcluster listen: {subscriber.error}\n")
        return 1
    return 0


def listen_main(argv: list[str]) -> int:
    """``pushcluster listen`` with ``argv`` (without the program and subcommand names); the exit code."""
    try:
        args = build_parser().parse_args(argv)
        if args.from_mid < 0:
            build_parser().error("--from-mid must be >= 0")
    except SystemExit as exc:   # argparse: --help (0) or a usage error (2), already printed
        return exc.code if isinstance(exc.code, int) else 2
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING, stream=sys.stderr,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        return asyncio.run(_listen(args, sys.stdout.buffer))
    except (ValueError, OSError) as exc:   # a bad --web URL or option value, an unreadable --cafile
        sys.stderr.write(f"pushcluster listen: {exc}\n")
        return 2
    except KeyboardInterrupt:
        return 0


if __name__ == "__main__":
    sys.exit(listen_main(sys.argv[1:]))
