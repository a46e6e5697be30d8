"""RedisStorage: the message store on one or more Redis servers (redis.asyncio + hiredis).

Records of key K, all on the shard ``Ring(shard names).get(K)``; ``{K}`` is a literal Redis Cluster hash tag:

``push:mid:{K}``   string, the last mid assigned to K (decimal); TTL >= max(mid_ttl, longest expire)
``push:msg:{K}``   sorted set, score = mid (rounded by Redis to a double), member = ``message.mid`` member
                   (exact 19-digit mid + msgpack payload); EXPIRE = the longest stored lifetime
``push:top:{K}``   string, the highest stored mid (19 digits), so a set that expired as a whole counts as trimmed
``push:trim:{K}``  string, the highest mid removed by the cap or by expiry (19 digits)

Every write of one key is one Lua script, so it is atomic. Lua numbers are doubles and cannot hold a mid, so the
scripts keep mids as decimal strings: compare by length then bytes, add one with INCR and read it back with GET.
Redis failures raise ``StorageUnavailable`` within ``timeout`` seconds: connections have socket timeouts and no
retries (a retried save could store a message twice).
"""
from __future__ import annotations

import asyncio
import logging
import time
from typing import Any, Awaitable, Callable, Mapping, Sequence, TypeVar

import redis.exceptions
from redis.asyncio import BlockingConnectionPool, Redis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff

from message import mid as mids
from message.save_batcher import SaveBatcher
from message.storage import (DEFAULT_LIMITS, FetchResult, Limits, StorageUnavailable, check_key, check_mid,
                             check_save, check_save_many)
from thirdparty.ring import Ring

log = logging.getLogger(__name__)

MID_KEY = "push:mid:{%s}"
MSG_KEY = "push:msg:{%s}"
TOP_KEY = "push:top:{%s}"
TRIM_KEY = "push:trim:{%s}"

T = TypeVar("T")
REDIS_ERRORS = (redis.exceptions.RedisError, OSError, asyncio.TimeoutError)

_LUA_HELPERS = """
local function greater(a, b)  -- decimal strings without leading zeros
  if #a ~= #b then return #a > #b end
  return a > b
end
local function pad(mid) return string.rep('0', 19 - #mid) .. mid end
local function extend_ttl(name, ttl)  -- never shortens a TTL; -1 (none yet) counts as shorter
  if redis.call('TTL', name) < ttl then redis.call('EXPIRE', name, ttl) end
end
local function raise_trim(name, mark, ttl)  -- mark: 19 digits
  local cur = redis.call('GET', name)
  if not cur or mark > cur then redis.call('SET', name, mark, 'KEEPTTL') end
  extend_ttl(name, ttl)
end
"""

# KEYS: mid, msg, top, trim.  ARGV: now_id, expire, mid_ttl, max_per_key, payload.  Returns the mid (string).
SAVE_LUA = _LUA_HELPERS + """
local now_id, expire, payload = ARGV[1], tonumber(ARGV[2]), ARGV[5]
local record_ttl = math.max(expire, tonumber(ARGV[3]))
local cap = tonumber(ARGV[4])
local last = redis.call('GET', KEYS[1])
local mid = now_id
if last and not greater(now_id, last) then
  redis.call('INCR', KEYS[1])
  mid = redis.call('GET', KEYS[1])
else
  redis.call('SET', KEYS[1], mid, 'KEEPTTL')
end
extend_ttl(KEYS[1], record_ttl)
if expire > 0 then
  if redis.call('EXISTS', KEYS[2]) == 0 then
    local top = redis.call('GET', KEYS[3])
    if top then raise_trim(KEYS[4], top, record_ttl) end
  end
  redis.call('ZADD', KEYS[2], mid, pad(mid) .. payload)
  redis.call('SET', KEYS[3], pad(mid), 'KEEPTTL')
  extend_ttl(KEYS[3], record_ttl)
  local count = redis.call('ZCARD', KEYS[2])
  if count > cap then
    local gone = redis.call('ZRANGE', KEYS[2], 0, count - cap - 1)
    redis.call('ZREMRANGEBYRANK', KEYS[2], 0, count - cap - 1)
    raise_trim(KEYS[4], string.sub(gone[#gone], 1, 19), record_ttl)
  end
  extend_ttl(KEYS[2], expire + 1)
end
return mid
"""

# KEYS: msg, trim.  ARGV: mid_ttl, member...  Removes expired members; returns the highest removed mid or nil.
REMOVE_LUA = _LUA_HELPERS + """
local top = nil
for i = 2, #ARGV do
  if redis.call('ZREM', KEYS[1], ARGV[i]) == 1 then
    local mid = string.sub(ARGV[i], 1, 19)
    if not top or mid > top then top = mid end
  end
end
if top then raise_trim(KEYS[2], top, tonumber(ARGV[1])) end
return top
"""


class _Shard:
    """One Redis server (or database): a bounded connection pool and the scripts registered on it."""

    def __init__(self, name: str, url: str, *, timeout: float, max_connections: int) -> None:
        self.name = name
        self.pool: BlockingConnectionPool = BlockingConnectionPool.from_url(
            url, max_connections=max_connections, timeout=timeout, socket_timeout=timeout,
            socket_connect_timeout=timeout, retry=Retry(NoBackoff(), 0))
        self.client: Redis = Redis(connection_pool=self.pool)
        self.save_script = self.client.register_script(SAVE_LUA)
        self.remove_script = self.client.register_script(REMOVE_LUA)
        self.saves = SaveBatcher(self)

    async def close(self) -> None:
        await self.client.aclose()
        await self.pool.aclose()


class RedisStorage:
    """The ``Storage`` Protocol on Redis, sharded by a ketama ring over the shard names."""

    def __init__(self, urls: Mapping[str, str], *, weights: Mapping[str, int] | None = None,
                 limits: Limits = DEFAULT_LIMITS, now_ns: Callable[[], int] = time.time_ns,
                 timeout: float = 1.0, max_connections: int = 64) -> None:
        if not urls:
            raise ValueError("RedisStorage needs at least one shard")
        weights = weights or {}
        self._shards = {name: _Shard(name, url, timeout=timeout, max_connections=max_connections)
                        for name, url in urls.items()}
        self._ring = Ring({name: weights.get(name, 1) for name in urls})
        self._limits = limits
        self._now_ns = now_ns

    def shard_of(self, key: str) -> str:
        """The name of the shard that holds ``key``."""
        name = self._ring.get(key)
        assert name is not None, "the ring is built from a non-empty shard map"
        return name

    def _shard_named(self, name: str) -> _Shard:
        shard = self._shards.get(name)
        if shard is None:
            raise StorageUnavailable("the redis store is closed")
        return shard

    def _shard_for(self, key: str) -> _Shard:
        return self._shard_named(self.shard_of(key))

    async def save(self, key: str, msg: bytes, expire: int) -> int:
        check_save(key, msg, expire, self._limits)
        shard = self._shard_for(key)
        reply = await shard.saves.submit(*self._save_call(key, msg, expire))
        return int(reply)

    async def save_many(self, keys: Sequence[str], msg: bytes, expire: int) -> dict[str, int]:
        """Save ``msg`` for every key; a key whose shard fails is left out of the result (logged)."""
        distinct = check_save_many(keys, msg, expire, self._limits)
        calls = [self._shard_for(key).saves.submit(*self._save_call(key, msg, expire)) for key in distinct]
        replies = await asyncio.gather(*calls, return_exceptions=True)
        saved: dict[str, int] = {}
        for key, reply in zip(distinct, replies):
            if isinstance(reply, BaseException):
                log.error("shard=%s key=%s: save failed: %s", self.shard_of(key), key, reply)
            else:
                saved[key] = int(reply)
        return saved

    def _save_call(self, key: str, msg: bytes, expire: int) -> tuple[list[str], list[bytes | str | int]]:
        now_ns = self._now_ns()
        payload = mids.encode_payload(msg, mids.expire_at(now_ns, expire)) if expire > 0 else b""
        limits = self._limits
        return ([MID_KEY % key, MSG_KEY % key, TOP_KEY % key, TRIM_KEY % key],
                [str(mids.time_id(now_ns)), expire, limits.mid_ttl, limits.max_per_key, payload])

    async def fetch(self, key: str, after_mid: int) -> FetchResult:
        check_key(key, self._limits)
        check_mid(after_mid)
        shard = self._shard_for(key)
        pipe = shard.client.pipeline(transaction=True)
        pipe.zrangebyscore(MSG_KEY % key, after_mid, "+inf")
        pipe.get(TRIM_KEY % key)
        pipe.get(TOP_KEY % key)
        pipe.exists(MSG_KEY % key)
        members, trim, top, exists = await _guard(shard, key, "fetch", pipe.execute())
        trim_mark = int(trim) if trim else 0
        if not exists and top:  # the set expired as a whole: everything up to `top` is gone
            trim_mark = max(trim_mark, int(top))
        now_s = self._now_ns() // mids.NS_PER_SECOND
        msgs: list[tuple[int, bytes]] = []
        expired: list[bytes] = []
        for member in members:
            try:
                stored = mids.decode_member(member)
            except mids.MemberError as exc:
                log.error("shard=%s key=%s: skipping a stored member: %s", shard.name, key, exc)
                continue
            if stored.mid <= after_mid:
                continue  # same rounded score as the asked mid
            if stored.expired(now_s):
                expired.append(member)
                trim_mark = max(trim_mark, stored.mid)
            else:
                msgs.append((stored.mid, stored.msg))
        if expired:
            await self._remove_expired(shard, key, expired)
        return FetchResult(msgs, trim_mark > after_mid)

    async def _remove_expired(self, shard: _Shard, key: str, members: list[bytes]) -> None:
        """ZREM expired members and raise the trim mark; a failure only delays it (the read already succeeded)."""
        try:
            await _guard(shard, key, "remove expired",
                         shard.remove_script([MSG_KEY % key, TRIM_KEY % key], [self._limits.mid_ttl, *members]))
        except StorageUnavailable as exc:
            log.warning("shard=%s key=%s: expired messages not removed: %s", shard.name, key, exc)
            return
        log.debug("key=%s: removed %d expired messages", key, len(members))

    async def delete(self, key: str) -> int:
        check_key(key, self._limits)
        shard = self._shard_for(key)
        pipe = shard.client.pipeline(transaction=True)
        pipe.zcard(MSG_KEY % key)
        pipe.delete(MSG_KEY % key, TOP_KEY % key, TRIM_KEY % key)
        count, _ = await _guard(shard, key, "delete", pipe.execute())
        return int(count)

    async def check_shards(self) -> list[str]:
        """PING every shard; log and return the names of those that do not answer (calls to them will fail
        fast with ``StorageUnavailable`` until they come back)."""
        down: list[str] = []
        for shard in self._shards.values():
            try:
                await _guard(shard, None, "ping", shard.client.ping())
            except StorageUnavailable as exc:
                log.warning("shard=%s: not reachable: %s", shard.name, exc)
                down.append(shard.name)
        return down

    async def close(self) -> None:
        shards, self._shards = list(self._shards.values()), {}
        for shard in shards:
            await shard.close()


async def _guard(shard: _Shard, key: str | None, action: str, call: Awaitable[T]) -> T:
    """Await a Redis call; turn any Redis or socket failure into ``StorageUnavailable``."""
    try:
        return await call
    except REDIS_ERRORS as exc:
        subject = f"{action} of key {key!r}" if key is not None else action
        raise StorageUnavailable(f"shard {shard.name}: {subject} failed: {type(exc).__name__}: {exc}") from exc


