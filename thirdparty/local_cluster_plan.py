"""The plan of a local cluster: every child process in start order, the files to write first, the summary.

:Status: used by ``thirdparty/local_cluster.py``.

Pure apart from reading the conf dir (see ``local_cluster_config.py`` for what is read). :func:`load_plan` turns a
conf dir, a data dir and a port base into a :class:`Plan`:

* stages, started one after the other, the processes of a stage together: ZooKeeper; the Redis shards; the
  message nodes; the comets, the first process of each comet name first and each further process of a name one
  stage later (so that it registers behind the first one and is its standby); the web nodes;
* stop groups, stopped one after the other in the reverse order of the roles: web, comet, message, redis,
  zookeeper;
* the files the children need, written at every start: ``zookeeper/zoo.cfg``, ``redis-<shard>/redis.conf`` and,
  with a port base other than the default, the port-shifted role configs in ``conf/`` (all under the data dir).
"""
from __future__ import annotations

import shutil
import sys
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Mapping

from thirdparty import zk_server
from thirdparty.confload import ConfigError, load_config, parse_address
from thirdparty.local_cluster_config import (
    DEFAULT_PORT_BASE, ROLES, ClusterConfig, RoleProcess, connect_address, format_address, read_role, shift_ports,
)
from thirdparty.zk_config import ZookeeperConfig

CLUSTER_CONF = "cluster.conf"
STOP_ORDER = ("web", "comet", "message", "redis", "zookeeper")
DEBIAN_PACKAGES = "redis-server zookeeper"
PROBE_ZOOKEEPER, PROBE_REDIS, PROBE_ACCEPT = "srvr", "ping", "accept"


@dataclass(frozen=True)
class Child:
    """One process the supervisor runs."""

    name: str                      # "zookeeper", "redis-r1", or a role process's config name
    kind: str                      # "zookeeper", "redis", "message", "comet" or "web"
    argv: tuple[str, ...]
    binds: tuple[str, ...]         # listeners: free before the start, accepting connections once it is ready
    probe: str = PROBE_ACCEPT      # how binds[0] is asked whether it serves: "srvr", "ping" or "accept"
    role: RoleProcess | None = None


@dataclass(frozen=True)
class Plan:
    """A whole local cluster, ready to run."""

    config: ClusterConfig
    conf_dir: Path
    data_dir: Path
    stages: tuple[tuple[Child, ...], ...]
    files: Mapping[Path, str]      # written (replaced) before the start
    zookeeper: ZookeeperConfig     # hosts, root and session timeout the roles use, which the supervisor follows

    @property
    def children(self) -> list[Child]:
        return [child for stage in self.stages for child in stage]

    def stop_groups(self) -> list[list[Child]]:
        return [[child for child in self.children if child.kind == kind] for kind in STOP_ORDER]


def redis_conf(address: str, directory: Path, appendfsync: str) -> str:
    """A redis.conf for one shard: loopback, AOF persistence in ``directory``, log on stdout."""
    host, port = parse_address(address)
    quoted = '"' + str(directory).replace("\\", "\\\\").replace('"', '\\"') + '"'
    return "\n".join([
        "# Written by `pushcluster cluster` at every start from cluster.conf [redis]; edit that file instead.",
        f"bind {host}", f"port {port}", "protected-mode yes", "daemonize no", f"dir {quoted}", 'logfile ""',
        "appendonly yes", f"appendfsync {appendfsync}", 'save ""', "",
    ])


def comet_stages(comets: list[RoleProcess]) -> list[tuple[RoleProcess, ...]]:
    """The comets in start stages: the n-th process of each comet name (in list order) goes to stage n."""
    stages: list[list[RoleProcess]] = []
    seen: dict[str, int] = {}
    for comet in comets:
        level = seen[comet.comet_name] = seen.get(comet.comet_name, -1) + 1
        if level == len(stages):
            stages.append([])
        stages[level].append(comet)
    return [tuple(stage) for stage in stages]


def load_cluster_config(path: Path) -> ClusterConfig:
    """``cluster.conf`` over the defaults in code; ConfigError naming the file and the key."""
    try:
        return load_config(ClusterConfig, str(path))
    except ConfigError as exc:
        raise ConfigError(exc if str(path) in str(exc) else f"{path}: {exc}") from None


def shift_cluster_config(config: ClusterConfig, port_base: int) -> ClusterConfig:
    """``config`` with its ZooKeeper and Redis addresses moved as :func:`shift_ports` moves them in text."""
    return replace(config, zookeeper=replace(config.zookeeper, address=shift_ports(config.zookeeper.address,
                                                                                   port_base)),
                   redis=replace(config.redis, shards={name: shift_ports(address, port_base)
                                                       for name, address in config.redis.shards.items()}))


def _read(path: Path) -> str:
    try:
        return path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{path}: cannot read: {getattr(exc, 'strerror', None) or exc}") from None


def load_plan(conf_dir: Path, data_dir: Path, port_base: int = DEFAULT_PORT_BASE,
              python: str = sys.executable) -> Plan:
    """Read ``conf_dir`` and lay out the cluster; ConfigError (naming the file and key) when something is wrong."""
    conf_dir, data_dir = conf_dir.resolve(), data_dir.resolve()
    if not (conf_dir / CLUSTER_CONF).is_file():
        raise ConfigError(f"{conf_dir}: no {CLUSTER_CONF} here (pass --conf-dir, e.g. the repository's "
                          "conf/cluster)")
    shifted = port_base != DEFAULT_PORT_BASE
    run_dir = data_dir / "conf" if shifted else conf_dir
    files: dict[Path, str] = {}
    config = shift_cluster_config(load_cluster_config(conf_dir / CLUSTER_CONF), port_base)

    roles: dict[str, list[RoleProcess]] = {}
    for role in ROLES:
        roles[role] = []
        for name in getattr(config.processes, role):
            source, run_path = conf_dir / f"{name}.conf", run_dir / f"{name}.conf"
            role_text = shift_ports(_read(source), port_base)
            if shifted:
                files[run_path] = role_text
            roles[role].append(read_role(source, role_text, role, config.zookeeper.address, run_path))
    zookeepers = {(r.zookeeper.hosts, r.zookeeper.root) for rs in roles.values() for r in rs}
    if len(zookeepers) > 1:
        raise ConfigError(f"{conf_dir}: every role config must use the same [zookeeper] root; found "
                          f"{sorted(root for _hosts, root in zookeepers)}")
    zookeeper = roles["comet"][0].zookeeper

    zk_dir = data_dir / "zookeeper"
    zk_host, zk_port = parse_address(config.zookeeper.address)
    files[zk_dir / "zoo.cfg"] = zk_server.zoo_cfg(str(zk_dir / "data"), zk_host, zk_port, config.zookeeper.tick_ms)
    stages: list[tuple[Child, ...]] = [(Child(
        "zookeeper", "zookeeper", tuple(zk_server.java_command(
            str(zk_dir / "zoo.cfg"), heap_mb=config.zookeeper.heap_mb, log_level=config.zookeeper.log_level)),
        (config.zookeeper.address,), PROBE_ZOOKEEPER),)]
    shards = []
    for shard, address in config.redis.shards.items():
        redis_dir = data_dir / f"redis-{shard}"
        files[redis_dir / "redis.conf"] = redis_conf(address, redis_dir, config.redis.appendfsync)
        shards.append(Child(f"redis-{shard}", "redis", ("redis-server", str(redis_dir / "redis.conf")),
                            (address,), PROBE_REDIS))
    stages.append(tuple(shards))

    def role_child(process: RoleProcess) -> Child:
        argv = (python, "-m", process.role, "-c", process.config_path)
        return Child(process.name, process.role, argv, process.binds, PROBE_ACCEPT, process)

    stages.append(tuple(role_child(process) for process in roles["message"]))
    stages.extend(tuple(role_child(process) for process in stage) for stage in comet_stages(roles["comet"]))
    stages.append(tuple(role_child(process) for process in roles["web"]))
    return Plan(config, run_dir, data_dir, tuple(stages), files, zookeeper)


def missing_programs(redis_server: str = "redis-server", java: str = "java") -> list[str]:
    """What this machine lacks to run a local cluster, one line each ([] when nothing)."""
    missing = [] if shutil.which(redis_server) else [f"{redis_server} is not on PATH (Debian package redis-server)"]
    why = zk_server.missing_zookeeper(java)
    return missing + ([why] if why else [])


def install_hint() -> str:
    return f"install them with: apt-get install -y {DEBIAN_PACKAGES}"


def summary(plan: Plan, pids: Mapping[str, int], states: Mapping[str, str]) -> str:
    """The text printed once the cluster is up: every process, its pid and addresses, and what to try.

    ``states`` maps a comet process's name to "active", "standby" or "not registered".
    """
    width = max(len(child.name) for child in plan.children)
    lines = [f"pushcluster local cluster is up (Ctrl-C or SIGTERM stops it); data in {plan.data_dir}",
             f"  {'process':<{width}}  {'pid':>7}  what"]
    for child in plan.children:
        role = child.role
        if role is None:
            what = f"{child.kind} {child.binds[0]}"
            if child.kind == "redis":
                what += f" (AOF in {plan.data_dir / child.name})"
        elif role.comet_name:
            state = states.get(child.name, "not registered")
            what = f"comet {role.comet_name} {state:<8} " + "  ".join(f"{k} {a}" for k, a in role.shown)
        else:
            what = f"{role.role:<7} " + "  ".join(f"{label} {address}" for label, address in role.shown)
        lines.append(f"  {child.name:<{width}}  {pids.get(child.name, 0):>7}  {what}")
    lines += _try_it(plan, pids, states)
    return "\n".join(lines)


def _try_it(plan: Plan, pids: Mapping[str, int], states: Mapping[str, str]) -> list[str]:
    web = next(child.role for child in plan.children if child.role is not None and child.role.role == "web")
    public = dict(web.shown)["public"]
    admin = format_address(*connect_address(dict(web.shown)["admin"]))
    public = format_address(*connect_address(public))
    lines = ["Try it:",
             f"  where to subscribe:  curl -s 'http://{public}/1/server/get?k=alice&p=2'   (p=1: WebSocket)",
             f"  push:                curl -s -X POST 'http://{admin}/push/private?key=alice&expire=600'"
             " -d '{\"hello\":\"world\"}'",
             f"  missed messages:     curl -s 'http://{public}/1/msg/get?k=alice&m=0'"]
    for child in plan.children:
        role = child.role
        standbys = [c.name for c in plan.children if c.role is not None and role is not None and c is not child
                    and c.role.comet_name == role.comet_name and states.get(c.name) == "standby"]
        if role is not None and states.get(child.name) == "active" and standbys:
            timeout = role.zookeeper.session_timeout
            lines.append(f"  failover:            kill -9 {pids.get(child.name, 0)}   ({child.name}; {standbys[0]} "
                         f"takes over comet {role.comet_name} within about {timeout:g} s)")
    return lines
