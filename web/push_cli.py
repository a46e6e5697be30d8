"""``pushcluster push KEY MESSAGE``: push one message to one key through a web node's admin API.

::

    pushcluster push alice '{"title":"hello"}' [--admin http://127.0.0.1:8091] [--expire 600] [--token T]
    {"mid":17005481234567890,"online":1}

MESSAGE is JSON text, sent byte for byte (a plain string needs its quotes: ``'"hello"'``); ``-`` reads it from
stdin. The token defaults to ``$PUSHCLUSTER_ADMIN_TOKEN`` (safer than the command line, which other users of the
machine can see). Prints the result as one JSON line and exits with 0; on an error prints it to stderr and exits
with 1 (2 for bad arguments). Runs as ``python -m web.push_cli`` too.
"""
from __future__ import annotations

import argparse
import asyncio
import json
import os
import ssl
import sys

from web.push_client import PushClient, PushClusterError, PushResult

DEFAULT_ADMIN = "http://127.0.0.1:8091"


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="pushcluster push", description="Push one message to one key.")
    parser.add_argument("key", help="the subscriber key")
    parser.add_argument("message", help="the message, JSON text ('-' reads it from stdin)")
    parser.add_argument("--admin", default=DEFAULT_ADMIN, help=f"web node admin URL (default {DEFAULT_ADMIN})")
    parser.add_argument("--expire", type=int, default=600,
                        help="seconds to keep it for offline clients; 0 = online only (default 600)")
    parser.add_argument("--token", default=os.environ.get("PUSHCLUSTER_ADMIN_TOKEN"),
                        help="admin token (default $PUSHCLUSTER_ADMIN_TOKEN)")
    parser.add_argument("--timeout", type=float, default=10.0, help="seconds to wait for the answer (default 10)")
    parser.add_argument("--cafile", help="PEM certificates to trust for an https:// URL (default: the system's)")
    return parser


async def _push(args: argparse.Namespace, message: bytes) -> PushResult:
    context = ssl.create_default_context(cafile=args.cafile) if args.cafile else None
    async with PushClient(args.admin, token=args.token, timeout=args.timeout, ssl_context=context) as client:
        return await client.push_private(args.key, message, args.expire)


def push_main(argv: list[str]) -> int:
    """``pushcluster push`` with ``argv`` (without the program and subcommand names); the exit code."""
    try:
        args = build_parser().parse_args(argv)
    except SystemExit as exc:   # argparse: --help (0) or a usage error (2), already printed
        return exc.code if isinstance(exc.code, int) else 2
    message = sys.stdin.buffer.read() if args.message == "-" else args.message.encode("utf-8")
    try:
        json.loads(message)
    except ValueError as exc:
        sys.stderr.write(f"pushcluster push: MESSAGE is not JSON ({exc}); a string needs quotes: '\"hello\"'\n")
        return 1
    try:
        result = asyncio.run(_push(args, message.strip()))
    except (PushClusterError, ValueError, OSError) as exc:   # OSError: an unreadable --cafile
        sys.stderr.write(f"pushcluster push: {type(exc).__name__}: {exc}\n")
        return 1
    sys.stdout.write(json.dumps({"mid": result.mid, "online": result.online}) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(push_main(sys.argv[1:]))
