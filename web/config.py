"""WebConfig: every setting of a web node, with its default (``conf/web.conf`` only overrides).

Load with :func:`load`; unknown keys, wrong types and the semantic checks below raise
``thirdparty.confload.ConfigError`` naming the key. The one safety rule: the admin listener may bind a
non-loopback address only when ``[admin] token`` is set. With ``[zookeeper] hosts`` set (cluster mode) the
``[comets.*]`` list and ``[message] rpc`` are not used: the nodes come from ZooKeeper. ``[tls]`` cert and key turn
the listeners into HTTPS; the files are loaded at load time, so a node with an unusable certificate does not start.
"""
from __future__ import annotations

import ipaddress
from dataclasses import dataclass, field
from typing import Any, Mapping

from comet.client import CometNodeInfo
from message.client import MessageClientConfig
from thirdparty.confload import ConfigError, load_config, parse_address
from thirdparty.rate_limit import parse_networks
from thirdparty.ring import MAX_WEIGHT
from thirdparty.tls import check_pair
from thirdparty.trace_buffer import TraceBufferConfig
from thirdparty.zk_config import ZookeeperConfig


def is_loopback(host: str) -> bool:
    """True for 127.0.0.0/8, ::1 and "localhost"; False for wildcards ("0.0.0.0", "::") and other names."""
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _check_binds(section: str, binds: list[str]) -> None:
    if not binds:
        raise ConfigError(f"{section}.bind needs at least one host:port")
    for bind in binds:
        parse_address(bind)


@dataclass(frozen=True)
class PublicConfig:
    """``[public]``: the client-facing HTTP listener(s)."""

    bind: list[str] = field(default_factory=lambda: ["0.0.0.0:8090"])  # host:port, one listener each

    def check(self) -> None:
        _check_binds("public", self.bind)


@dataclass(frozen=True)
class AdminConfig:
    """``[admin]``: the back-end HTTP listener(s) and their bearer token."""

    bind: list[str] = field(default_factory=lambda: ["127.0.0.1:8091"])  # host:port, one listener each
    token: str = ""  # when set, every admin request needs "Authorization: Bearer <token>"

    def check(self) -> None:
        _check_binds("admin", self.bind)
        if not self.token:
            exposed = [bind for bind in self.bind if not is_loopback(parse_address(bind)[0])]
            if exposed:
                raise ConfigError(f"admin.bind {exposed[0]!r} is not a loopback address: set admin.token "
                                  "or bind the admin listener to 127.0.0.1")


@dataclass(frozen=True)
class CometEntry:
    """``[comets.<name>]``: one comet node of the static list (the name is the ring name, as in ZooKeeper)."""

    rpc: list[str]                                   # CometRPC host:port (the first is used)
    weight: int = 1                                  # ketama weight, 1..1000
    tcp: list[str] = field(default_factory=list)     # addresses handed to TCP clients by /server/get
    ws: list[str] = field(default_factory=list)      # addresses handed to WebSocket clients by /server/get

    def check(self) -> None:
        if not 1 <= self.weight <= MAX_WEIGHT:
            raise ConfigError(f"weight must be 1..{MAX_WEIGHT}")
        if not self.rpc:
            raise ConfigError("rpc needs at least one host:port")
        for address in [*self.rpc, *self.tcp, *self.ws]:
            parse_address(address)


def _default_comets() -> dict[str, CometEntry]:
    """One comet on this host with the comet role's default ports."""
    return {"node1": CometEntry(rpc=["127.0.0.1:6970"], tcp=["127.0.0.1:6969"], ws=["127.0.0.1:6968"])}


@dataclass(frozen=True)
class RpcConfig:
    """``[rpc]``: calls from the web to the comet nodes."""

    comet_timeout: float = 3.0  # seconds per CometRPC call

    def check(self) -> None:
        if self.comet_timeout <= 0:
            raise ConfigError("rpc.comet_timeout must be > 0")


@dataclass(frozen=True)
class LimitsConfig:
    """``[limits]``: bounds on every request."""

    max_body_bytes: int = 64 * 1024      # largest admin body (a message, or an mprivate document)
    max_key_bytes: int = 128             # longest subscriber key, UTF-8 bytes
    max_keys_per_push: int = 1000        # most keys in one /push/mprivate (and per comet call of /push/tags)
    max_tag_keys: int = 100_000          # most keys one /push/tags may resolve to (more: refused, nothing pushed)
    max_expire: int = 30 * 24 * 3600     # longest message lifetime, seconds
    idle_timeout: float = 60.0           # seconds an idle keep-alive connection is kept open
    body_timeout: float = 30.0           # seconds allowed to receive one request body
    push_wait_default: float = 5.0       # seconds a push with wait=acked waits when it gives no timeout
    push_wait_max: float = 30.0          # longest timeout a push with wait may ask for
    public_rate_per_addr: float = 20.0   # public requests per second one address may keep up; 0: no rate limit
    public_burst_per_addr: int = 100     # public requests one address may send at once before the rate applies
    public_rate_max_addrs: int = 100_000  # most addresses tracked by the rate limit; past it, new ones go unlimited
    rate_limit_exempt: list[str] = field(default_factory=lambda: ["127.0.0.0/8", "::1/128"])  # not rate limited

    @property
    def hard_body_cap(self) -> int:
        """Bodies above this are refused by the HTTP server without being buffered (HTTP 400, closed)."""
        return 2 * self.max_body_bytes

    def check(self) -> None:
        for name in ("max_body_bytes", "max_key_bytes", "max_keys_per_push", "max_tag_keys", "max_expire"):
            if getattr(self, name) < 1:
                raise ConfigError(f"limits.{name} must be >= 1")
        if self.idle_timeout <= 0 or self.body_timeout <= 0:
            raise ConfigError("limits.idle_timeout and limits.body_timeout must be > 0")
        if not 0 < self.push_wait_default <= self.push_wait_max <= 3600:
            raise ConfigError("limits: need 0 < push_wait_default <= push_wait_max <= 3600")
        if self.public_rate_per_addr < 0 or self.public_burst_per_addr < 0:
            raise ConfigError("limits.public_rate_per_addr and limits.public_burst_per_addr must be >= 0")
        if self.public_rate_per_addr > 0 and self.public_burst_per_addr < 1:
            raise ConfigError("limits.public_burst_per_addr must be >= 1 when public_rate_per_addr is set")
        if self.public_rate_max_addrs < 1:
            raise ConfigError("limits.public_rate_max_addrs must be >= 1")
        try:
            parse_networks(self.rate_limit_exempt)
        except ValueError as exc:
            raise ConfigError(f"limits.rate_limit_exempt: {exc}") from None


@dataclass(frozen=True)
class BroadcastConfig:
    """``[broadcast]``: the background retry of a broadcast to the comets that failed it (web/broadcast_retry.py)."""

    retry_interval: float = 1.0     # seconds between two tries of a broadcast to a comet that failed it
    retry_for: float = 30.0         # seconds a failed comet is retried after the broadcast; 0: no retry
    max_pending_retries: int = 64   # broadcasts with retries pending at most; past it the oldest is dropped

    def check(self) -> None:
        if self.retry_interval <= 0:
            raise ConfigError("broadcast.retry_interval must be > 0")
        if self.retry_for < 0:
            raise ConfigError("broadcast.retry_for must be >= 0")
        if self.max_pending_retries < 1:
            raise ConfigError("broadcast.max_pending_retries must be >= 1")


@dataclass(frozen=True)
class TlsConfig:
    """``[tls]``: HTTPS on the listeners once ``cert`` and ``key`` are set."""

    cert: str = ""       # PEM certificate chain (leaf first); "" = plain HTTP
    key: str = ""        # PEM private key of cert, unencrypted
    public: bool = True  # the public listeners serve HTTPS (when cert is set)
    admin: bool = True   # the admin listeners serve HTTPS (when cert is set)

    @property
    def enabled(self) -> bool:
        return bool(self.cert)

    def check(self) -> None:
        check_pair(self.cert, self.key)


@dataclass(frozen=True)
class WebConfig:
    """A web node's whole configuration."""

    public: PublicConfig = field(default_factory=PublicConfig)
    admin: AdminConfig = field(default_factory=AdminConfig)
    comets: dict[str, CometEntry] = field(default_factory=_default_comets)  # static comet list, by node name
    message: MessageClientConfig = field(default_factory=MessageClientConfig)
    rpc: RpcConfig = field(default_factory=RpcConfig)
    limits: LimitsConfig = field(default_factory=LimitsConfig)
    broadcast: BroadcastConfig = field(default_factory=BroadcastConfig)  # retries of failed /push/all comets
    tls: TlsConfig = field(default_factory=TlsConfig)
    zookeeper: ZookeeperConfig = field(default_factory=ZookeeperConfig)  # hosts set: comets and message nodes
                                                                         # come from ZooKeeper, not this file
    trace: TraceBufferConfig = field(default_factory=TraceBufferConfig)  # failed pushes and fetches, traced

    def check(self) -> None:
        for name in self.comets:
            if not name:
                raise ConfigError("comets: a node name must not be empty")

    def comet_nodes(self) -> list[CometNodeInfo]:
        """The static comet list in the shape the ZooKeeper view will publish."""
        return [CometNodeInfo(name=name, weight=entry.weight, rpc=list(entry.rpc), tcp=list(entry.tcp),
                              ws=list(entry.ws))
                for name, entry in self.comets.items()]


def load(path: str | None, overrides: Mapping[str, Any] | None = None) -> WebConfig:
    """Defaults, then the TOML file at ``path`` (if any), then ``overrides`` (a nested mapping)."""
    return load_config(WebConfig, path, overrides)
