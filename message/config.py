"""MessageConfig: every setting of a message node, with its default (``conf/message.conf`` only overrides).

Load with ``load(path)``; unknown keys, wrong types and the semantic checks below raise
``thirdparty.confload.ConfigError`` naming the key. ``[trace]`` (the delivery trace store, kept in the same Redis
shards or beside the SQLite file) is ``message.trace_store.MessageTraceConfig``.
"""
from dataclasses import dataclass, field

from message.storage import DEFAULT_LIMITS, Limits
from message.trace_store import MessageTraceConfig
from thirdparty.confload import ConfigError, load_config, parse_address
from thirdparty.ring import MAX_WEIGHT
from thirdparty.zk_config import ZookeeperConfig

WILDCARD_HOSTS = ("0.0.0.0", "::")

BACKENDS = ("redis", "sqlite")
REDIS_URL_SCHEMES = ("redis://", "rediss://", "unix://")
MAX_MID_TTL = 10 * 365 * 24 * 3600  # Redis accepts any TTL; ten years is already "forever"


def _default_redis() -> dict[str, str]:
    return {"r1": "redis://127.0.0.1:6379/0"}


@dataclass(frozen=True)
class RpcConfig:
    """``[rpc]``: the MessagePack-RPC listener that comet and web nodes call."""

    bind: str = "127.0.0.1:7070"         # host:port to listen on
    max_fetch_bytes: int = 960 * 1024    # GetPrivate returns the oldest messages up to this many payload bytes
    advertise: str = ""                  # cluster mode: host:port other nodes call; empty: the bind address
    weight: int = 1                      # cluster mode: this node's share of the calls, 1..1000

    @property
    def advertised(self) -> str:
        """The address published in ZooKeeper."""
        return self.advertise or self.bind

    def check(self) -> None:
        parse_address(self.bind)
        if self.advertise:
            parse_address(self.advertise)
        if self.max_fetch_bytes < 1:
            raise ConfigError("max_fetch_bytes must be >= 1")
        if not 1 <= self.weight <= MAX_WEIGHT:
            raise ConfigError(f"weight must be 1..{MAX_WEIGHT}")


@dataclass(frozen=True)
class BindConfig:
    """``[bind]``: optional listeners besides the RPC one."""

    metrics: str = ""   # host:port of the Prometheus listener (GET /metrics only); empty: off

    def check(self) -> None:
        if self.metrics:
            try:
                parse_address(self.metrics)
            except ConfigError as exc:
                raise ConfigError(f"metrics: {exc}") from None


@dataclass(frozen=True)
class StorageConfig:
    """``[storage]``: where messages live and how many of them are kept."""

    backend: str = "redis"                                        # "redis" or "sqlite"
    redis: dict[str, str] = field(default_factory=_default_redis)  # shard name -> URL; keys sharded by ketama
    redis_weights: dict[str, int] = field(default_factory=dict)   # shard name -> ring weight (default 1)
    redis_timeout: float = 1.0            # seconds for connect and for each reply
    redis_max_connections: int = 64       # unused: one pipelined connection per shard; kept so old configs load
    sqlite_path: str = "pushcluster-data/messages.db"
    sqlite_sweep_interval: float = 60.0   # seconds between sweeps of expired messages
    max_per_key: int = DEFAULT_LIMITS.max_per_key
    max_expire: int = DEFAULT_LIMITS.max_expire
    max_message_bytes: int = DEFAULT_LIMITS.max_message_bytes
    max_key_bytes: int = DEFAULT_LIMITS.max_key_bytes
    mid_ttl: int = DEFAULT_LIMITS.mid_ttl
    max_keys_per_call: int = DEFAULT_LIMITS.max_keys_per_call
    max_public: int = DEFAULT_LIMITS.max_public   # public (broadcast) messages kept; older ones are trimmed

    def limits(self) -> Limits:
        return Limits(max_per_key=self.max_per_key, max_expire=self.max_expire,
                      max_message_bytes=self.max_message_bytes, max_key_bytes=self.max_key_bytes,
                      mid_ttl=self.mid_ttl, max_keys_per_call=self.max_keys_per_call,
                      max_public=self.max_public)

    def check(self) -> None:
        if self.backend not in BACKENDS:
            raise ConfigError(f"backend must be one of {', '.join(BACKENDS)}, not {self.backend!r}")
        if self.backend == "redis":
            self._check_redis()
        elif not self.sqlite_path:
            raise ConfigError("sqlite_path must not be empty")
        if self.sqlite_sweep_interval <= 0:
            raise ConfigError("sqlite_sweep_interval must be > 0")
        for name in ("max_per_key", "max_expire", "max_message_bytes", "max_key_bytes", "max_keys_per_call",
                     "max_public"):
            if getattr(self, name) < 1:
                raise ConfigError(f"{name} must be >= 1")
        if not 1 <= self.mid_ttl <= MAX_MID_TTL:
            raise ConfigError(f"mid_ttl must be 1..{MAX_MID_TTL} seconds")

    def _check_redis(self) -> None:
        if not self.redis:
            raise ConfigError("redis needs at least one shard")
        for name, url in self.redis.items():
            if not name:
                raise ConfigError("redis: a shard name must not be empty")
            if not url.startswith(REDIS_URL_SCHEMES):
                raise ConfigError(f"redis.{name}: {url!r} is not a redis://, rediss:// or unix:// URL")
        for name, weight in self.redis_weights.items():
            if name not in self.redis:
                raise ConfigError(f"redis_weights.{name}: no such shard in redis")
            if not 1 <= weight <= MAX_WEIGHT:
                raise ConfigError(f"redis_weights.{name} must be 1..{MAX_WEIGHT}")
        if self.redis_timeout <= 0:
            raise ConfigError("redis_timeout must be > 0")
        if self.redis_max_connections < 1:
            raise ConfigError("redis_max_connections must be >= 1")


@dataclass(frozen=True)
class MessageConfig:
    """The whole message node configuration."""

    rpc: RpcConfig = field(default_factory=RpcConfig)
    storage: StorageConfig = field(default_factory=StorageConfig)
    zookeeper: ZookeeperConfig = field(default_factory=ZookeeperConfig)
    trace: MessageTraceConfig = field(default_factory=MessageTraceConfig)  # the delivery trace store
    bind: BindConfig = field(default_factory=BindConfig)

    def check(self) -> None:
        host, port = parse_address(self.rpc.advertised)
        if self.zookeeper.enabled and (host in WILDCARD_HOSTS or port == 0):
            raise ConfigError(f"rpc.advertise: set the host:port other nodes reach this one at (rpc.bind "
                              f"{self.rpc.bind!r} cannot be published in ZooKeeper)")


def load(path: str | None, overrides: dict[str, object] | None = None) -> MessageConfig:
    """Defaults, overridden by the TOML file at ``path`` (if any), then by ``overrides``."""
    return load_config(MessageConfig, path, overrides)
