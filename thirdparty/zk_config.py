"""The ``[zookeeper]`` section every role's config shares: where ZooKeeper is, the cluster's root znode, the session.

:Status: used by ``web/config.py``, ``message/config.py`` and (once wired) ``comet/config.py``.

Pure (no kazoo import), so that loading a config never loads the ZooKeeper client. An empty ``hosts`` means static
mode: the node runs as before, from its config file alone.
"""
from __future__ import annotations

from dataclasses import dataclass

from thirdparty.confload import ConfigError, parse_address

MIN_SESSION_TIMEOUT = 0.4   # ZooKeeper's own floor is 2 x tickTime; below this nothing stays up
MAX_SESSION_TIMEOUT = 600.0
DEFAULT_ZK_PORT = 2181


def check_hosts(hosts: str) -> None:
    """Raise ConfigError unless ``hosts`` is ``host[:port][,host[:port]...][/chroot]`` (kazoo's connect string)."""
    servers, slash, chroot = hosts.partition("/")
    if slash:
        check_znode_path("hosts: the chroot", "/" + chroot)
    for server in servers.split(","):
        server = server.strip()
        if not server:
            raise ConfigError(f"hosts {hosts!r}: an empty server entry")
        if server.endswith("]") or ":" not in server:
            server = f"{server}:{DEFAULT_ZK_PORT}"
        parse_address(server)


def check_znode_path(what: str, path: str) -> None:
    """Raise ConfigError unless ``path`` is an absolute znode path with no empty, "." or ".." component."""
    if not path.startswith("/") or path == "/":
        raise ConfigError(f"{what} must be an absolute znode path like /pushcluster, not {path!r}")
    for part in path[1:].split("/"):
        if part in ("", ".", "..") or any(ord(char) < 0x20 for char in part):
            raise ConfigError(f"{what} {path!r}: bad component {part!r}")


@dataclass(frozen=True)
class ZookeeperConfig:
    """``[zookeeper]``: cluster mode. ``hosts = ""`` (the default) is static mode."""

    hosts: str = ""                 # "zk1:2181,zk2:2181[/chroot]"; empty: static mode, no ZooKeeper
    root: str = "/pushcluster"      # the cluster's znode: <root>/comet/<name>/..., <root>/message/...
    session_timeout: float = 10.0   # seconds; a dead node's znodes vanish this long after it stopped answering

    @property
    def enabled(self) -> bool:
        return bool(self.hosts)

    def check(self) -> None:
        if self.hosts:
            check_hosts(self.hosts)
        check_znode_path("root", self.root)
        if not MIN_SESSION_TIMEOUT <= self.session_timeout <= MAX_SESSION_TIMEOUT:
            raise ConfigError(f"session_timeout must be {MIN_SESSION_TIMEOUT}..{MAX_SESSION_TIMEOUT} "
                              "seconds")
