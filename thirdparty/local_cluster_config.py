"""What ``pushcluster cluster`` reads: ``cluster.conf`` and, from each role's config file, what the supervisor needs.

:Status: used by ``thirdparty/local_cluster_plan.py``.

A conf dir (``conf/cluster/`` as shipped) holds ``cluster.conf`` (:class:`ClusterConfig`: the ZooKeeper server,
the Redis shards, which role processes to run, supervisor timings) and one role config per process,
``<name>.conf``, the very file that process runs with (``python -m <role> -c <name>.conf``). The supervisor does
not import the roles: it reads their TOML itself, only for the addresses it waits on and prints
(:class:`RoleProcess`), and requires those keys to be written out; everything else stays the role's business.

Ports. Every ``host:port`` written in the files (in any string: binds, ZooKeeper hosts, Redis URLs; comments too)
whose port lies in ``DEFAULT_PORT_BASE .. DEFAULT_PORT_BASE + PORT_SPAN - 1`` moves with ``--port-base N`` by
``N - DEFAULT_PORT_BASE`` (:func:`shift_ports`), so one command can run a second cluster beside the first.
"""
from __future__ import annotations

import re
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping

from thirdparty.confload import ConfigError, parse_address
from thirdparty.zk_config import ZookeeperConfig

DEFAULT_PORT_BASE = 17000
PORT_SPAN = 1000
ROLES = ("message", "comet", "web")
RESERVED_NAMES = ("zookeeper", "cluster")
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_-]{0,39}")
_HOST_PORT = re.compile(r"(?<=[\w\]]):(\d{1,5})(?!\d)")   # the ":port" of "host:port", "[::1]:port", URLs
APPENDFSYNC = ("always", "everysec", "no")
ZK_LOG_LEVELS = ("", "error", "warn", "info", "debug")


def _check_name(what: str, name: str) -> None:
    if not _NAME.fullmatch(name):
        raise ConfigError(f"{what} {name!r}: use 1-40 letters, digits, '-' or '_'")


@dataclass(frozen=True)
class ZookeeperServerConfig:
    """``[zookeeper]``: the ZooKeeper server the supervisor runs (its files in ``<data-dir>/zookeeper``)."""

    address: str = "127.0.0.1:17181"  # clientPort; every role's [zookeeper] hosts must be exactly this
    tick_ms: int = 500                # ZooKeeper grants sessions of 2..20 ticks: 1..10 s here
    heap_mb: int = 64                 # java -Xmx
    log_level: str = "warn"           # the server's own log lines: "" (none), "error", "warn", "info", "debug"

    def check(self) -> None:
        parse_address(self.address)
        if not 10 <= self.tick_ms <= 60000:
            raise ConfigError("tick_ms must be 10..60000")
        if not 16 <= self.heap_mb <= 65536:
            raise ConfigError("heap_mb must be 16..65536")
        if self.log_level not in ZK_LOG_LEVELS:
            raise ConfigError(f"log_level must be one of {ZK_LOG_LEVELS}")


def _default_shards() -> dict[str, str]:
    return {"r1": "127.0.0.1:17379", "r2": "127.0.0.1:17380"}


@dataclass(frozen=True)
class RedisServersConfig:
    """``[redis]``: one redis-server per shard, AOF persistence in ``<data-dir>/redis-<shard>``."""

    shards: dict[str, str] = field(default_factory=_default_shards)  # shard name -> host:port
    appendfsync: str = "everysec"     # AOF fsync policy: "always", "everysec" or "no"

    def check(self) -> None:
        if not self.shards:
            raise ConfigError("shards: at least one shard")
        for name, address in self.shards.items():
            _check_name("shards: shard name", name)
            parse_address(address)
        if self.appendfsync not in APPENDFSYNC:
            raise ConfigError(f"appendfsync must be one of {APPENDFSYNC}")


@dataclass(frozen=True)
class ProcessesConfig:
    """``[processes]``: the role processes, each named after its config file ``<name>.conf`` in the conf dir."""

    message: list[str] = field(default_factory=lambda: ["message-1", "message-2"])
    comet: list[str] = field(default_factory=lambda: ["comet-a", "comet-a-standby", "comet-b"])
    web: list[str] = field(default_factory=lambda: ["web"])

    def check(self) -> None:
        names = [*self.message, *self.comet, *self.web]
        for role in ROLES:
            if not getattr(self, role):
                raise ConfigError(f"{role}: at least one process")
        for name in names:
            _check_name("process", name)
            if name in RESERVED_NAMES or name.startswith("redis-"):
                raise ConfigError(f"process {name!r}: the name is taken by the supervisor")
        duplicates = sorted({name for name in names if names.count(name) > 1})
        if duplicates:
            raise ConfigError(f"process {duplicates[0]!r} is listed twice")


@dataclass(frozen=True)
class SupervisorConfig:
    """``[supervisor]``: how long to wait for a process to get ready and to stop."""

    ready_timeout: float = 30.0  # seconds a process has to accept connections (and register) after it started
    stop_grace: float = 10.0     # seconds between SIGTERM and SIGKILL when stopping

    def check(self) -> None:
        if not 1.0 <= self.ready_timeout <= 600.0:
            raise ConfigError("ready_timeout must be 1..600 seconds")
        if not 0.1 <= self.stop_grace <= 600.0:
            raise ConfigError("stop_grace must be 0.1..600 seconds")


@dataclass(frozen=True)
class ClusterConfig:
    """``cluster.conf``: everything about a local cluster that is not a role's own config."""

    zookeeper: ZookeeperServerConfig = field(default_factory=ZookeeperServerConfig)
    redis: RedisServersConfig = field(default_factory=RedisServersConfig)
    processes: ProcessesConfig = field(default_factory=ProcessesConfig)
    supervisor: SupervisorConfig = field(default_factory=SupervisorConfig)


def shift_ports(text: str, port_base: int) -> str:
    """``text`` with every host:port whose port is in the default block moved to the block at ``port_base``."""
    shift = port_base - DEFAULT_PORT_BASE
    if not 1024 <= port_base <= 65536 - PORT_SPAN:
        raise ConfigError(f"port base {port_base}: must be 1024..{65536 - PORT_SPAN}")

    def move(match: re.Match[str]) -> str:
        port = int(match.group(1))
        return f":{port + shift}" if DEFAULT_PORT_BASE <= port < DEFAULT_PORT_BASE + PORT_SPAN else match.group(0)

    return _HOST_PORT.sub(move, text)


def connect_address(address: str) -> tuple[str, int]:
    """Where to connect to reach a listener bound to ``address`` (a wildcard host becomes loopback)."""
    host, port = parse_address(address)
    return {"0.0.0.0": "127.0.0.1", "::": "::1", "": "127.0.0.1"}.get(host, host), port


def format_address(host: str, port: int) -> str:
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


@dataclass(frozen=True)
class RoleProcess:
    """One role process as the supervisor sees it: what it binds, what it publishes, what to print."""

    name: str                         # the config file's name without .conf
    role: str                         # "message", "comet" or "web"
    config_path: str
    zookeeper: ZookeeperConfig        # its [zookeeper] section
    binds: tuple[str, ...]            # listeners: each must be free before and accept connections once started
    shown: tuple[tuple[str, str], ...]  # (label, address) for the summary, e.g. ("tcp", "127.0.0.1:17169")
    registers: str = ""               # znode dir under the root it registers in: "message", "comet/<name>", ""
    published_rpc: tuple[str, ...] = ()  # the "rpc" its znode JSON holds, which tells its znode apart
    comet_name: str = ""


def _get(doc: Mapping[str, Any], path: str, kind: type, where: str, addresses: bool = True) -> Any:
    """The value at dotted ``path`` of a TOML document; ConfigError when it is missing or not a ``kind`` (of
    host:port strings, when ``addresses``)."""
    section, _, key = path.partition(".")
    table = doc.get(section, {})
    if not isinstance(table, dict) or key not in table:
        raise ConfigError(f"{where}: [{section}] {key} must be set (the supervisor waits for it and prints it)")
    value = table[key]
    if kind is list and not (isinstance(value, list) and all(isinstance(item, str) for item in value)):
        raise ConfigError(f"{where}: [{section}] {key} must be a list of host:port strings")
    if kind is str and not isinstance(value, str):
        raise ConfigError(f"{where}: [{section}] {key} must be a string")
    for address in (value if kind is list else [value] if value else []) if addresses else []:
        try:
            parse_address(address)
        except ConfigError as exc:
            raise ConfigError(f"{where}: [{section}] {key}: {exc}") from None
    return value


def _optional(doc: Mapping[str, Any], path: str, kind: type, where: str, default: Any) -> Any:
    section, _, key = path.partition(".")
    return _get(doc, path, kind, where) if key in doc.get(section, {}) else default


def _zookeeper(doc: Mapping[str, Any], where: str, zk_address: str) -> ZookeeperConfig:
    hosts = _get(doc, "zookeeper.hosts", str, where, addresses=False)
    if hosts != zk_address:
        raise ConfigError(f"{where}: [zookeeper] hosts must be {zk_address!r} (cluster.conf [zookeeper] address), "
                          f"not {hosts!r}")
    section = doc["zookeeper"]
    root = section.get("root", ZookeeperConfig.root)
    timeout = section.get("session_timeout", ZookeeperConfig.session_timeout)
    if not isinstance(root, str) or not isinstance(timeout, (int, float)) or isinstance(timeout, bool):
        raise ConfigError(f"{where}: [zookeeper] root must be a string and session_timeout a number")
    config = ZookeeperConfig(hosts=hosts, root=root, session_timeout=float(timeout))
    try:
        config.check()
    except ConfigError as exc:
        raise ConfigError(f"{where}: [zookeeper] {exc}") from None
    return config


def read_role(source: Path, text: str, role: str, zk_address: str, run_path: Path) -> RoleProcess:
    """The :class:`RoleProcess` of the role config ``text`` (read from ``source``; the process runs with
    ``run_path``, the same file or its port-shifted copy); ConfigError naming the file and the key."""
    where = str(source)
    try:
        doc = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{where}: invalid TOML: {exc}") from None
    zookeeper = _zookeeper(doc, where, zk_address)

    def process(binds: list[str], shown: list[tuple[str, str]], registers: str = "",
                published: list[str] | None = None, comet_name: str = "") -> RoleProcess:
        return RoleProcess(source.stem, role, str(run_path), zookeeper, tuple(binds), tuple(shown), registers,
                           tuple(published or []), comet_name)

    if role == "message":
        bind = _get(doc, "rpc.bind", str, where)
        advertise = _optional(doc, "rpc.advertise", str, where, "") or bind
        return process([bind], [("rpc", advertise)], "message", [advertise])
    if role == "comet":
        name = _get(doc, "node.name", str, where, addresses=False)
        tcp, ws = _get(doc, "bind.tcp", list, where), _get(doc, "bind.ws", list, where)
        rpc, stat = _get(doc, "bind.rpc", str, where), _get(doc, "bind.stat", str, where)

        def advertised(kind: str, binds: list[str]) -> list[str]:
            default = [format_address(*connect_address(bind)) for bind in binds]
            return list(_optional(doc, f"advertise.{kind}", list, where, []) or default)

        shown = [("tcp", a) for a in advertised("tcp", tcp)] + [("ws", a) for a in advertised("ws", ws)]
        shown += [("rpc", rpc)] + ([("stat", stat)] if stat else [])
        return process([*tcp, *ws, rpc, *([stat] if stat else [])], shown, f"comet/{name}",
                       advertised("rpc", [rpc]), name)
    if role == "web":
        public, admin = _get(doc, "public.bind", list, where), _get(doc, "admin.bind", list, where)
        shown = [("public", a) for a in public] + [("admin", a) for a in admin]
        return process([*public, *admin], shown)
    raise ValueError(f"unknown role {role!r}")
