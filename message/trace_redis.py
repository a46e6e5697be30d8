"""RedisTraceStore: the delivery trace in Redis, on the shard that holds the key's messages.

Records of key K (``{K}`` is the key's Redis Cluster hash tag, as for ``push:msg:{K}``; caps and lifetimes in
``message/trace_store.py``):

``trace:m:{K}``  list: the records of K's messages, each ``<mid, 19 digits><packed record>``, oldest first; the
                 newest ``max_message_records`` are kept; EXPIRE ``retention`` renewed on every write
``trace:k:{K}``  list: K's history (packed records), oldest first; the newest ``max_history_records`` are kept;
                 EXPIRE ``retention`` renewed on every write

A batch is written with one ``WRITE_LUA`` call per shard (and per ``CHUNK_RECORDS`` records), the whole batch in
one msgpack argument: per push (one record) that is one RPUSH and one EXPIRE. The lists are named inside the
argument, not as KEYS (redis-py encodes every argument in Python: one argument per batch costs far less than two
per push), so the script is not Redis Cluster safe; like the message store's ``SAVE_MANY_LUA`` it runs on plain
Redis servers sharded by the ring.
"""
from __future__ import annotations

import asyncio
import logging
from typing import Awaitable, Mapping, Sequence, TypeVar

import msgpack
import redis.exceptions
from redis.asyncio import BlockingConnectionPool, Redis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff

try:  # redis-py >= 7: its "maintenance notifications" mode skips the check that redials a connection the server
    from redis.maint_notifications import MaintNotificationsConfig   # closed (a restarted Redis); turn it off
    _POOL_OPTIONS: dict[str, object] = {"maint_notifications_config": MaintNotificationsConfig(enabled=False)}
except ImportError:  # older redis-py: no such mode
    _POOL_OPTIONS = {}

from message.storage import StorageUnavailable
from message.trace_store import Group, MessageTraceConfig, TraceRecord, group
from thirdparty.ring import Ring

log = logging.getLogger(__name__)
T = TypeVar("T")

MESSAGE_LIST = "trace:m:{%s}"
HISTORY_LIST = "trace:k:{%s}"
CHUNK_RECORDS = 4000   # records per script call (bounds the time one call holds the shard)
MAX_CONNECTIONS = 8    # per shard: the trace store writes one batch at a time and answers admin queries
REDIS_ERRORS = (redis.exceptions.RedisError, OSError, asyncio.TimeoutError)

# ARGV: retention, then one msgpack array of groups [list, cap, [records]]. Redis's cmsgpack reads no bin type,
# so the batch is packed with strings and records as raw strings.
WRITE_LUA = """
local ttl = tonumber(ARGV[1])
for _, group in ipairs(cmsgpack.unpack(ARGV[2])) do
  local list, cap = group[1], group[2]
  if redis.call('RPUSH', list, unpack(group[3])) > cap then redis.call('LTRIM', list, -cap, -1) end
  redis.call('EXPIRE', list, ttl)
end
return 0
"""


class _Shard:
    def __init__(self, name: str, url: str, timeout: float) -> None:
        self.name = name
        self.pool: BlockingConnectionPool = BlockingConnectionPool.from_url(
            url, max_connections=MAX_CONNECTIONS, timeout=timeout, socket_timeout=timeout,
            socket_connect_timeout=timeout, retry=Retry(NoBackoff(), 0), **_POOL_OPTIONS)
        self.client: Redis = Redis(connection_pool=self.pool)
        self.write = self.client.register_script(WRITE_LUA)

    async def guard(self, what: str, call: Awaitable[T]) -> T:
        try:
            return await call
        except REDIS_ERRORS as exc:
            raise StorageUnavailable(f"shard {self.name}: trace {what} failed: {type(exc).__name__}: {exc}") from exc

    async def read(self, name: str, what: str) -> list[bytes]:
        records = await self.guard(what, self.client.lrange(name, 0, -1))
        return [record for record in records if isinstance(record, bytes)]

    async def close(self) -> None:
        await self.client.aclose()
        await self.pool.aclose()


class RedisTraceStore:
    """``TraceStore`` on the message store's Redis shards (same names, same ring, so a key's trace lives beside
    its messages)."""

    def __init__(self, urls: Mapping[str, str], config: MessageTraceConfig, *,
                 weights: Mapping[str, int] | None = None, timeout: float = 1.0) -> None:
        if not urls:
            raise ValueError("RedisTraceStore needs at least one shard")
        self._config = config
        self._shards = {name: _Shard(name, url, timeout) for name, url in urls.items()}
        self._single = next(iter(urls)) if len(urls) == 1 else None
        self._ring = Ring({name: (weights or {}).get(name, 1) for name in urls})

    def shard_of(self, key: str) -> str:
        if self._single is not None:
            return self._single
        name = self._ring.get(key)
        assert name is not None, "the ring is built from a non-empty shard map"
        return name

    def _shard(self, key: str) -> _Shard:
        shard = self._shards.get(self.shard_of(key))
        if shard is None:
            raise StorageUnavailable("the redis trace store is closed")
        return shard

    async def write(self, records: Sequence[TraceRecord]) -> None:
        config = self._config
        by_shard: dict[str, list[Group]] = {}
        for item in group(records, max_message_records=config.max_message_records,
                          max_history_records=config.max_history_records):
            by_shard.setdefault(self.shard_of(item.key), []).append(item)
        calls = [self._write_chunk(self._shard_named(name), chunk)
                 for name, groups in by_shard.items() for chunk in _chunks(groups)]
        for result in await asyncio.gather(*calls, return_exceptions=True):
            if isinstance(result, BaseException):
                raise result

    def _shard_named(self, name: str) -> _Shard:
        shard = self._shards.get(name)
        if shard is None:
            raise StorageUnavailable("the redis trace store is closed")
        return shard

    async def _write_chunk(self, shard: _Shard, groups: list[Group]) -> None:
        config = self._config
        batch = [[HISTORY_LIST % item.key, config.max_history_records, item.records] if item.history
                 else [MESSAGE_LIST % item.key, config.max_message_records, item.records] for item in groups]
        blob = msgpack.packb(batch, use_bin_type=False)
        await shard.guard(f"write of {len(groups)} list(s) (first key {groups[0].key!r})",
                          shard.write(keys=[], args=[config.retention, blob]))

    async def message_records(self, key: str) -> list[bytes]:
        return await self._shard(key).read(MESSAGE_LIST % key, f"read of key {key!r}")

    async def history_records(self, key: str) -> list[bytes]:
        return await self._shard(key).read(HISTORY_LIST % key, f"read of key {key!r}")

    async def close(self) -> None:
        shards, self._shards = list(self._shards.values()), {}
        for shard in shards:
            await shard.close()


def _chunks(groups: list[Group]) -> list[list[Group]]:
    """Groups cut into script calls of about CHUNK_RECORDS records (a group, at most 4096, is never split)."""
    chunks: list[list[Group]] = [[]]
    size = 0
    for item in groups:
        if chunks[-1] and size + len(item.records) > CHUNK_RECORDS:
            chunks.append([])
            size = 0
        chunks[-1].append(item)
        size += len(item.records)
    return chunks
