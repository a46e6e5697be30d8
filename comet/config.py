"""CometConfig: every setting of a comet node, with its default (``conf/comet.conf`` only overrides).

Load with ``load(path)``; unknown keys, wrong types and the semantic checks below raise
``thirdparty.confload.ConfigError`` naming the key. The defaults follow DESIGN.md section 4 (TCP :6969,
WebSocket :6968, heartbeat >= 30 s, 5 s first packet, 64 connections per key, 128 queued messages). With
``[zookeeper] hosts`` set the node runs in cluster mode (``comet/cluster.py``) and ``[ring]`` must stay empty.
``[auth]`` (subscribe tokens) is ``comet.auth.AuthConfig``; its secrets and the ``[tls]`` files are read and
checked at load time, so a node with an unusable secret or certificate does not start. ``[trace]`` batches the
node's delivery-trace records (``thirdparty.trace_buffer.TraceBufferConfig``); ``[broadcast]`` paces public
messages (``comet/broadcast.py``).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Mapping

from comet.auth import AuthConfig
from message.client import MessageClientConfig
from thirdparty.confload import ConfigError, load_config, parse_address
from thirdparty.rate_limit import parse_networks
from thirdparty.ring import MAX_WEIGHT
from thirdparty.tls import check_pair
from thirdparty.trace_buffer import TraceBufferConfig
from thirdparty.zk_config import ZookeeperConfig

LOOPBACK_FOR_WILDCARD = {"0.0.0.0": "127.0.0.1", "::": "::1"}


def _format_address(host: str, port: int) -> str:
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def advertised(bind: str) -> str:
    """The address clients are told for a listener bound to ``bind`` (a wildcard host becomes loopback)."""
    host, port = parse_address(bind)
    return _format_address(LOOPBACK_FOR_WILDCARD.get(host, host), port)


@dataclass(frozen=True)
class NodeConfig:
    """``[node]``: this comet's ring name and weight."""

    name: str = "node1"  # ring name; web and message nodes map keys to this name
    weight: int = 1      # ketama weight published for this node

    def check(self) -> None:
        if not self.name:
            raise ConfigError("name must not be empty")
        if not 1 <= self.weight <= MAX_WEIGHT:
            raise ConfigError(f"weight must be 1..{MAX_WEIGHT}")


@dataclass(frozen=True)
class BindConfig:
    """``[bind]``: listeners. An empty list (or an empty ``stat``) disables that listener."""

    tcp: list[str] = field(default_factory=lambda: ["0.0.0.0:6969"])  # TCP client listeners
    ws: list[str] = field(default_factory=lambda: ["0.0.0.0:6968"])   # WebSocket client listeners
    rpc: str = "127.0.0.1:6970"   # CometRPC (MessagePack-RPC) listener called by web nodes
    stat: str = "127.0.0.1:6971"  # HTTP GET /stat listener; "" disables it

    def check(self) -> None:
        for address in [*self.tcp, *self.ws, self.rpc]:
            parse_address(address)
        if self.stat:
            parse_address(self.stat)
        if not self.tcp and not self.ws:
            raise ConfigError("at least one of tcp and ws must list a listener")


@dataclass(frozen=True)
class AdvertiseConfig:
    """``[advertise]``: addresses published for this node (empty: derived from [bind], 0.0.0.0 -> 127.0.0.1)."""

    tcp: list[str] = field(default_factory=list)
    ws: list[str] = field(default_factory=list)
    rpc: list[str] = field(default_factory=list)  # cluster mode: the CometRPC address(es) web nodes call

    def check(self) -> None:
        for address in [*self.tcp, *self.ws, *self.rpc]:
            parse_address(address)


@dataclass(frozen=True)
class RingConfig:
    """``[ring]``: ``{name: weight}`` of every comet node; empty means this node alone owns every key."""

    nodes: dict[str, int] = field(default_factory=dict)

    def check(self) -> None:
        for name, weight in self.nodes.items():
            if not name:
                raise ConfigError("nodes: a node name must not be empty")
            if not 1 <= weight <= MAX_WEIGHT:
                raise ConfigError(f"nodes.{name}: weight must be 1..{MAX_WEIGHT}")


@dataclass(frozen=True)
class LimitsConfig:
    """``[limits]``: bounds on client connections and pushes."""

    max_conns_per_key: int = 64        # more subscribers on one key get "-c"
    max_queue: int = 128               # unsent messages per connection before it is closed
    max_key_bytes: int = 128           # longest subscriber key, UTF-8 bytes
    max_arg_bytes: int = 4096          # longest TCP subscribe argument / WebSocket query value
    first_packet_timeout: float = 5.0  # seconds to send the subscribe command (TCP) or the upgrade request (ws)
    min_heartbeat: int = 30            # smallest heartbeat a client may ask for, seconds
    max_heartbeat: int = 3600          # largest heartbeat a client may ask for, seconds
    heartbeat_grace: float = 5.0       # a connection silent for heartbeat + grace seconds is closed
    max_message_bytes: int = 65536     # largest pushed message (raw JSON)
    max_keys_per_push: int = 1000      # most keys in one PushPrivates call
    max_ws_frame: int = 4096           # largest WebSocket frame from a client (bigger: close 1009)
    timer_tick: float = 0.5            # seconds between deadline checks (timeouts fire up to 2 ticks late)
    heartbeat_burst: int = 16          # most heartbeats one read may carry; more closes the connection
    max_conns_per_addr: int = 1000     # open connections per source address (IPv6: per /64); 0: no cap
    conn_rate_per_addr: float = 50.0   # new connections per second one address may keep up; 0: no rate limit
    conn_burst_per_addr: int = 200     # new connections one address may open at once before the rate applies
    addr_limit_exempt: list[str] = field(default_factory=lambda: ["127.0.0.0/8", "::1/128"])  # not limited
    max_acks_per_read: int = 256       # most acks one read may carry; more closes the connection
    max_ack_waits: int = 10000         # pushes waiting for an ack at once (wait=acked); more are answered "written"
    max_push_wait: float = 60.0        # longest ack wait a push may ask for, seconds

    def check(self) -> None:
        for name in ("max_conns_per_key", "max_queue", "max_key_bytes", "max_arg_bytes", "min_heartbeat",
                     "max_message_bytes", "max_keys_per_push", "max_ws_frame", "heartbeat_burst", "max_acks_per_read",
                     "max_ack_waits"):
            if getattr(self, name) < 1:
                raise ConfigError(f"{name} must be >= 1")
        if self.max_conns_per_addr < 0 or self.conn_rate_per_addr < 0 or self.conn_burst_per_addr < 0:
            raise ConfigError("max_conns_per_addr, conn_rate_per_addr and conn_burst_per_addr must be >= 0")
        if self.conn_rate_per_addr > 0 and self.conn_burst_per_addr < 1:
            raise ConfigError("conn_burst_per_addr must be >= 1 when conn_rate_per_addr is set")
        try:
            parse_networks(self.addr_limit_exempt)
        except ValueError as exc:
            raise ConfigError(f"addr_limit_exempt: {exc}") from None
        if self.max_key_bytes > self.max_arg_bytes:
            raise ConfigError("max_key_bytes must be <= max_arg_bytes")
        if self.max_heartbeat < self.min_heartbeat:
            raise ConfigError("max_heartbeat must be >= min_heartbeat")
        if self.first_packet_timeout <= 0:
            raise ConfigError("first_packet_timeout must be > 0")
        if self.heartbeat_grace < 0:
            raise ConfigError("heartbeat_grace must be >= 0")
        if not 0.01 <= self.timer_tick <= 10:
            raise ConfigError("timer_tick must be 0.01..10 seconds")
        if not 0 < self.max_push_wait <= 3600:
            raise ConfigError("max_push_wait must be > 0 and <= 3600 seconds")


@dataclass(frozen=True)
class BroadcastConfig:
    """``[broadcast]``: public messages (gid 1) written to every connection of the node (comet/broadcast.py)."""

    max_queued: int = 16    # broadcasts queued at once (the one being written included); one more gets 65535
    chunk: int = 128        # connections written per event-loop pass; private pushes run between two chunks
    rate: float = 50000.0   # connection writes per second at most, all broadcasts together

    def check(self) -> None:
        if self.max_queued < 1 or self.chunk < 1:
            raise ConfigError("max_queued and chunk must be >= 1")
        if not 0 < self.rate < float("inf"):
            raise ConfigError("rate must be > 0 (connection writes per second)")


@dataclass(frozen=True)
class TlsConfig:
    """``[tls]``: TLS on the client listeners once ``cert`` and ``key`` are set (wss:// and TLS over TCP)."""

    cert: str = ""    # PEM certificate chain (leaf first); "" = no TLS
    key: str = ""     # PEM private key of cert, unencrypted
    tcp: bool = True  # the TCP listeners speak TLS (when cert is set)
    ws: bool = True   # the WebSocket listeners speak TLS, i.e. wss:// (when cert is set)

    @property
    def enabled(self) -> bool:
        return bool(self.cert)

    def check(self) -> None:
        check_pair(self.cert, self.key)


@dataclass(frozen=True)
class CometConfig:
    """A comet node's whole configuration."""

    node: NodeConfig = field(default_factory=NodeConfig)
    bind: BindConfig = field(default_factory=BindConfig)
    advertise: AdvertiseConfig = field(default_factory=AdvertiseConfig)
    ring: RingConfig = field(default_factory=RingConfig)
    message: MessageClientConfig = field(default_factory=MessageClientConfig)
    limits: LimitsConfig = field(default_factory=LimitsConfig)
    auth: AuthConfig = field(default_factory=AuthConfig)  # subscribe tokens (off without secrets)
    tls: TlsConfig = field(default_factory=TlsConfig)
    zookeeper: ZookeeperConfig = field(default_factory=ZookeeperConfig)  # hosts set: cluster mode
    trace: TraceBufferConfig = field(default_factory=TraceBufferConfig)  # delivery trace records for MessageRPC
    broadcast: BroadcastConfig = field(default_factory=BroadcastConfig)  # public messages to every connection

    def check(self) -> None:
        if self.ring.nodes and self.node.name not in self.ring.nodes:
            raise ConfigError(f"ring.nodes must include this node's name {self.node.name!r}")
        if self.zookeeper.enabled and self.ring.nodes:
            raise ConfigError("ring.nodes is for static mode: with zookeeper.hosts set the ring comes from ZooKeeper")
        if self.zookeeper.enabled and not self.advertise.rpc and parse_address(self.bind.rpc)[0] in ("0.0.0.0", "::"):
            raise ConfigError("advertise.rpc: set the CometRPC address web nodes reach this node at (bind.rpc "
                              f"{self.bind.rpc!r} is a wildcard)")

    def ring_nodes(self) -> dict[str, int]:
        """The ``{name: weight}`` map of the ring (this node alone when ``[ring] nodes`` is empty)."""
        return dict(self.ring.nodes) if self.ring.nodes else {self.node.name: self.node.weight}


def load(path: str | None, overrides: Mapping[str, Any] | None = None) -> CometConfig:
    """Defaults, overridden by the TOML file at ``path`` (if any), then by ``overrides`` (a nested mapping)."""
    return load_config(CometConfig, path, overrides)
