"""The ``pushcluster`` command: run one role, all three in one process (``standalone``), or a whole local cluster.

``pushcluster message|comet|web -c FILE`` hands over to that role's own entry point. ``pushcluster
standalone`` builds the three role configs in code (SQLite store, or Redis with ``--redis``; no ZooKeeper),
starts message, comet and web in one event loop, prints where to connect, and stops them in reverse order on
SIGTERM/SIGINT. ``pushcluster cluster`` runs ZooKeeper, Redis and every role as child processes on loopback
(``thirdparty/local_cluster.py``, configs in ``conf/cluster/``). This is the one module that imports every role.
"""
from __future__ import annotations

import argparse
import os
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import comet.__main__
import message.__main__
import web.__main__
from comet import config as comet_config
from comet.node import CometNode
from comet.subscriber_cli import listen_main
from message import config as message_config
from message.node import MessageNode
from thirdparty import local_cluster
from thirdparty.confload import ConfigError
from thirdparty.local_cluster_config import DEFAULT_PORT_BASE, PORT_SPAN
from thirdparty.runtime import CONFIG_ERROR, STARTUP_FAILURE, Node, logging_from_args, run_node
from web import config as web_config
from web.node import WebNode
from web.push_cli import push_main

ROLES = {"message": message.__main__.main, "comet": comet.__main__.main, "web": web.__main__.main}


@dataclass(frozen=True)
class Configs:
    """The three role configs of one standalone process."""

    message: message_config.MessageConfig
    comet: comet_config.CometConfig
    web: web_config.WebConfig


def _addr(host: str, port: int) -> str:
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def standalone_configs(args: argparse.Namespace) -> Configs:
    """Role configs wired to each other on loopback; only the client listeners use ``--host``."""
    local = "127.0.0.1"
    public = args.advertise_host or (local if args.host in ("0.0.0.0", "::") else args.host)
    message_rpc = _addr(local, args.message_rpc_port)
    comet_rpc = _addr(local, args.comet_rpc_port)
    tcp, ws = _addr(args.host, args.tcp_port), _addr(args.host, args.ws_port)
    tcp_public, ws_public = _addr(public, args.tcp_port), _addr(public, args.ws_port)
    if args.redis:
        storage: dict[str, object] = {"backend": "redis", "redis": {"r1": args.redis}}
    else:
        storage = {"backend": "sqlite", "sqlite_path": os.path.join(args.data_dir, "messages.db")}
    return Configs(
        message=message_config.load(None, {"rpc": {"bind": message_rpc}, "storage": storage}),
        comet=comet_config.load(None, {
            "node": {"name": "node1"},
            "bind": {"tcp": [tcp], "ws": [ws], "rpc": comet_rpc,
                     "stat": _addr(local, args.stat_port) if args.stat_port else ""},
            "advertise": {"tcp": [tcp_public], "ws": [ws_public]},
            "message": {"rpc": message_rpc}}),
        web=web_config.load(None, {
            "public": {"bind": [_addr(args.host, args.web_port)]},
            "admin": {"bind": [_addr(args.admin_host, args.admin_port)], "token": args.admin_token},
            "comets": {"node1": {"rpc": [comet_rpc], "tcp": [tcp_public], "ws": [ws_public]}},
            "message": {"rpc": message_rpc}}),
    )


class Standalone:
    """Message, comet and web nodes in one process, started in data-flow order and stopped in reverse."""

    def __init__(self, configs: Configs) -> None:
        self.configs = configs
        self.nodes: list[Node] = [MessageNode(configs.message), CometNode(configs.comet), WebNode(configs.web)]
        self._started: list[Node] = []

    async def start(self) -> None:
        for node in self.nodes:
            await node.start()
            self._started.append(node)
        print(self.banner(), flush=True)

    async def stop(self) -> None:
        while self._started:
            await self._started.pop().stop()

    def banner(self) -> str:
        c, w, m = self.configs.comet, self.configs.web, self.configs.message
        store = m.storage.sqlite_path if m.storage.backend == "sqlite" else ", ".join(m.storage.redis.values())
        return "\n".join([
            "pushcluster standalone is running (Ctrl-C stops it)",
            f"  subscribe (WebSocket): ws://{c.advertise.ws[0]}/sub?key=KEY&heartbeat=30&ver=1",
            f"  subscribe (TCP):       {c.advertise.tcp[0]}",
            f"  public HTTP:           http://{w.public.bind[0]}/1/server/get?k=KEY&p=1",
            f"  admin HTTP (push):     curl -X POST 'http://{w.admin.bind[0]}/push/private?key=KEY&expire=600'"
            " -d '{\"hello\":\"world\"}'",
            f"  messages stored in:    {store}",
        ])


def standalone_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="pushcluster standalone",
                                description="web + comet + message in one process, no ZooKeeper")
    p.add_argument("--host", default="127.0.0.1",
                   help="address of the client listeners (WebSocket, TCP, public HTTP); 0.0.0.0 for all")
    p.add_argument("--advertise-host", default="", help="host handed to clients (default: --host, or 127.0.0.1)")
    p.add_argument("--data-dir", default="pushcluster-data", help="where the SQLite store lives")
    p.add_argument("--redis", default="", metavar="URL", help="store messages in this Redis instead of SQLite")
    p.add_argument("--admin-host", default="127.0.0.1", help="admin listener address (needs --admin-token "
                   "when not loopback)")
    p.add_argument("--admin-token", default="", help="require 'Authorization: Bearer TOKEN' on the admin API")
    for flag, default in (("web-port", 8090), ("admin-port", 8091), ("ws-port", 6968), ("tcp-port", 6969),
                          ("comet-rpc-port", 6970), ("stat-port", 6971), ("message-rpc-port", 7070)):
        p.add_argument(f"--{flag}", type=int, default=default, metavar="PORT", help=f"default {default}")
    p.add_argument("--log-config", metavar="PATH", help="logging.config.fileConfig file")
    return p


def run_standalone(argv: Sequence[str]) -> int:
    parser = standalone_parser()
    args = parser.parse_args(argv)
    logging_from_args(parser, args.log_config)
    try:
        configs = standalone_configs(args)
    except ConfigError as exc:
        print(f"pushcluster standalone: {exc}", file=sys.stderr)
        return CONFIG_ERROR
    code = run_node(Standalone(configs))
    if code == STARTUP_FAILURE:
        print("pushcluster standalone: could not start (is another pushcluster using these ports?)",
              file=sys.stderr)
    return code


def cluster_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="pushcluster cluster",
        description="a whole cluster on loopback, each part a child process: ZooKeeper, Redis shards, message "
                    "nodes, comets (with a standby) and web nodes, as conf/cluster/cluster.conf lists them")
    p.add_argument("--conf-dir", default="conf/cluster", metavar="DIR",
                   help="cluster.conf and one <name>.conf per role process (default conf/cluster)")
    p.add_argument("--data-dir", default="pushcluster-data/cluster", metavar="DIR",
                   help="ZooKeeper data and Redis AOF files, kept across restarts (default pushcluster-data/cluster)")
    p.add_argument("--port-base", type=int, default=DEFAULT_PORT_BASE, metavar="N",
                   help=f"move the ports of the configs ({DEFAULT_PORT_BASE}-{DEFAULT_PORT_BASE + PORT_SPAN - 1}) "
                        f"to N..N+{PORT_SPAN - 1}, e.g. to run a second cluster (default {DEFAULT_PORT_BASE})")
    p.add_argument("--log-config", metavar="PATH", help="logging.config.fileConfig file for the supervisor")
    return p


def run_cluster(argv: Sequence[str]) -> int:
    parser = cluster_parser()
    args = parser.parse_args(argv)
    logging_from_args(parser, args.log_config)
    try:
        return local_cluster.run(Path(args.conf_dir), Path(args.data_dir), args.port_base,
                                 announce=lambda text: print(text, flush=True))
    except local_cluster.ClusterError as exc:
        print(f"pushcluster cluster: {exc}", file=sys.stderr)
        return exc.code


USAGE = """usage: pushcluster {standalone,cluster,message,comet,web,listen,push} [options]

  standalone          web + comet + message in one process (SQLite store; --redis URL for Redis)
  cluster             ZooKeeper, Redis and every role as processes on loopback (see conf/cluster/README.md)
  message -c FILE     run a message node (see conf/message.conf)
  comet -c FILE       run a comet node (see conf/comet.conf)
  web -c FILE         run a web node (see conf/web.conf)
  listen KEY          subscribe KEY and print each message as a JSON line (client SDK)
  push KEY MESSAGE    push MESSAGE (JSON) to KEY through a web node's admin API (server SDK);
                      --all, --tags EXPR or --alias A instead of KEY: broadcast, tag expression, alias

Run 'pushcluster COMMAND --help' for a command's options."""


def main(argv: Sequence[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    if not args or args[0] in ("-h", "--help"):
        print(USAGE)
        return 0 if args else 2
    command, rest = args[0], args[1:]
    if command == "standalone":
        return run_standalone(rest)
    if command == "cluster":
        return run_cluster(rest)
    if command == "listen":
        return listen_main(rest)
    if command == "push":
        return push_main(rest)
    if command in ROLES:
        return ROLES[command](rest)
    print(f"pushcluster: unknown command {command!r}\n\n{USAGE}", file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main())
