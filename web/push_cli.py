"""``pushcluster push``: push one message through a web node's admin API, to a key, every client, a tag expression
or an alias.

::

    pushcluster push alice '{"title":"hello"}' [--admin http://127.0.0.1:8091] [--expire 600] [--token T]
    {"mid":17005481234567890,"online":1}
    pushcluster push alice '{"title":"hello"}' --wait acked --timeout 5
    {"mid":17005481234567891,"online":1,"outcome":"acked"}
    pushcluster push --all '{"title":"to everyone"}'
    {"mid":17005481234568000,"online":1200,"fc":[]}
    pushcluster push --tags '[["beta","android"],["staff"]]' '{"title":"beta news"}'
    {"keys":42,"online":40,"fk":[]}
    pushcluster push --alias alice@example.com '{"title":"hi"}'
    {"key":"alice","mid":17005481234568100,"online":1}

MESSAGE is JSON text, sent byte for byte (a plain string needs its quotes: ``'"hello"'``); ``-`` reads it from
stdin. ``--wait acked|written`` (not with ``--all``) answers with the outcome of each key (``outcome``, or
``outcomes`` per key for ``--tags``); with ``--wait``, ``--timeout`` is how long the push waits for an ack (the
web node's default when not given) and the answer is awaited that much longer; without it, ``--timeout`` is the
seconds to wait for the answer. The token defaults to ``$PUSHCLUSTER_ADMIN_TOKEN`` (safer than the command line,
which other users of the machine can see). Prints the result as one JSON line and exits with 0; on an error
prints it to stderr and exits with 1 (2 for bad arguments). Runs as ``python -m web.push_cli`` too.
"""
from __future__ import annotations

import argparse
import asyncio
import json
import os
import ssl
import sys
from typing import Any

from web.push_client import PushClient, PushClusterError

DEFAULT_ADMIN = "http://127.0.0.1:8091"
HTTP_TIMEOUT = 10.0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="pushcluster push", usage="%(prog)s [options] (KEY | --all | --tags EXPR "
                                     "| --alias A) MESSAGE", description="Push one message.")
    parser.add_argument("target", nargs="+", metavar="[KEY] MESSAGE",
                        help="the subscriber key (unless --all, --tags or --alias) and the message, JSON text "
                             "('-' reads it from stdin)")
    group = parser.add_mutually_exclusive_group()
    group.add_argument("--all", action="store_true", help="broadcast to every connected client (public message)")
    group.add_argument("--tags", metavar="EXPR", help='the keys of a tag expression, JSON: [["a","b"],["c"]] = '
                                                      "(a AND b) OR c")
    group.add_argument("--alias", metavar="A", help="the key that has this alias")
    parser.add_argument("--admin", default=DEFAULT_ADMIN, help=f"web node admin URL (default {DEFAULT_ADMIN})")
    parser.add_argument("--expire", type=int, default=600,
                        help="seconds to keep it for offline clients; 0 = online only (default 600)")
    parser.add_argument("--wait", choices=("acked", "written"), help="answer with the outcome of each key")
    parser.add_argument("--timeout", type=float, help="with --wait: seconds to wait for an ack; without: seconds "
                                                      f"to wait for the answer (default {HTTP_TIMEOUT:g})")
    parser.add_argument("--token", default=os.environ.get("PUSHCLUSTER_ADMIN_TOKEN"),
                        help="admin token (default $PUSHCLUSTER_ADMIN_TOKEN)")
    parser.add_argument("--cafile", help="PEM certificates to trust for an https:// URL (default: the system's)")
    return parser


def _parse(argv: list[str]) -> argparse.Namespace:
    parser = build_parser()
    args = parser.parse_args(argv)
    fanout = args.all or args.tags is not None or args.alias is not None
    if len(args.target) != (1 if fanout else 2):
        parser.error("give MESSAGE with --all, --tags or --alias, else KEY MESSAGE")
    if args.all and args.wait:
        parser.error("--wait does not apply to --all (public messages are not acknowledged)")
    if args.tags is not None:
        try:
            args.tags = json.loads(args.tags)
        except ValueError as exc:
            parser.error(f"--tags is not JSON ({exc}); e.g. '[[\"beta\",\"android\"],[\"staff\"]]'")
    args.key, args.message = (None, args.target[0]) if fanout else args.target
    return args


async def _push(args: argparse.Namespace, message: bytes) -> dict[str, Any]:
    context = ssl.create_default_context(cafile=args.cafile) if args.cafile else None
    waiting = args.wait is not None
    http_timeout = HTTP_TIMEOUT if waiting or args.timeout is None else args.timeout
    wait_timeout = args.timeout if waiting else None
    async with PushClient(args.admin, token=args.token, timeout=http_timeout, ssl_context=context) as client:
        if args.all:
            done = await client.push_all(message, args.expire)
            return {"mid": done.mid, "online": done.online, "fc": done.failed_comets}
        if args.tags is not None:
            tagged = await client.push_tags(args.tags, message, args.expire, args.wait, wait_timeout)
            out: dict[str, Any] = {"keys": tagged.keys, "online": tagged.online, "fk": tagged.failed_keys}
            return {**out, "outcomes": tagged.outcomes} if waiting else out
        if args.alias is not None:
            result = await client.push_alias(args.alias, message, args.expire, args.wait, wait_timeout)
            out = {"key": result.key, "mid": result.mid, "online": result.online}
        else:
            result = await client.push_private(args.key, message, args.expire, args.wait, wait_timeout)
            out = {"mid": result.mid, "online": result.online}
        return {**out, "outcome": result.outcome} if waiting else out


def push_main(argv: list[str]) -> int:
    """``pushcluster push`` with ``argv`` (without the program and subcommand names); the exit code."""
    try:
        args = _parse(argv)
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
    sys.stdout.write(json.dumps(result, ensure_ascii=False) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(push_main(sys.argv[1:]))
