"""RedisStorage: the message store on one or more Redis servers (one pipelined ``RedisLink`` per shard).

Records of key K, all on the shard ``Ring(shard names).get(K)``; ``{K}`` is a literal Redis Cluster hash tag:

``push:mid:{K}``   string, the last mid assigned to K (decimal); TTL >= max(mid_ttl, longest expire)
``push:msg:{K}``   sorted set, score = mid (rounded by Redis to a double), member = ``message.mid`` member
                   (exact 19-digit mid + msgpack payload); EXPIRE = the longest stored lifetime
``push:top:{K}``   string, the highest stored mid (19 digits), so a set that expired as a whole counts as trimmed
``push:trim:{K}``  string, the highest mid removed by the cap or by expiry (19 digits)

Public (broadcast) messages have the same four records under fixed names, ``push:pub:mid``, ``push:pub:msg``,
``push:pub:top`` and ``push:pub:trim``, on the shard ``Ring(shard names).get("push:pub")``, capped at
``max_public``; the same scripts serve them (they take the record names as KEYS). No key's records can have these
names (a key's records end in ``}``), so no key's fetch or delete ever reaches a public message.

Every operation is one Lua script (their texts: ``message.redis_scripts``) run with EVALSHA, so every write of a
key is atomic and so is every read (``FETCH_LUA`` reads the set and the marks in one step; no MULTI/EXEC).
``save_many`` sends one script per shard for up to ``SAVE_MANY_CHUNK`` keys (``SAVE_MANY_LUA``: the same per-key
steps as ``SAVE_LUA``, each key's failure caught and reported for that key alone) instead of one command per key.
Lua numbers are doubles and cannot hold a mid, so the scripts keep mids as decimal strings: compare by length then
bytes, add one with INCR and read it back with GET. The commands of one shard go over one connection in call order
(``message.redis_link``: written at once, or together with the others of the same event-loop pass).

Redis failures raise ``StorageUnavailable`` within ``timeout`` seconds (connect, or a reply), and nothing is
retried (a retried save could store a message twice); the next call dials again, so a restarted shard serves
again at once.
"""
from __future__ import annotations

import asyncio
import hashlib
import logging
import time
from typing import Any, Callable, Mapping, Sequence

from message import mid as mids
from message.redis_link import Arg, RedisLink, RedisUnavailable, ReplyError, pack
from message.redis_scripts import DELETE_LUA, FETCH_LUA, REMOVE_LUA, SAVE_LUA, SAVE_MANY_LUA
from message.storage import (DEFAULT_LIMITS, PUBLIC_LOG_KEY, FetchResult, Limits, StorageUnavailable, check_key,
                             check_message, check_mid, check_save, check_save_many)
from thirdparty.ring import Ring

log = logging.getLogger(__name__)

MID_KEY = "push:mid:{%s}"
MSG_KEY = "push:msg:{%s}"
TOP_KEY = "push:top:{%s}"
TRIM_KEY = "push:trim:{%s}"
PUBLIC_RING_NAME = "push:pub"  # the ring places the public records where it would place this name
PUBLIC_MID, PUBLIC_MSG, PUBLIC_TOP, PUBLIC_TRIM = "push:pub:mid", "push:pub:msg", "push:pub:top", "push:pub:trim"

SAVE_MANY_CHUNK = 128  # keys per SAVE_MANY_LUA call: bounds how long one script holds the shard


class Script:
    """A Lua script, run by its SHA1 (EVALSHA)."""

    __slots__ = ("name", "source", "sha")

    def __init__(self, name: str, source: str) -> None:
        self.name = name
        self.source = source
        self.sha = hashlib.sha1(source.encode("utf-8")).hexdigest()

    def command(self, keys: Sequence[str], args: Sequence[Arg]) -> bytes:
        return pack("EVALSHA", self.sha, len(keys), *keys, *args)


SAVE = Script("save", SAVE_LUA)
SAVE_MANY = Script("save_many", SAVE_MANY_LUA)
FETCH = Script("fetch", FETCH_LUA)
REMOVE = Script("remove expired", REMOVE_LUA)
DELETE = Script("delete", DELETE_LUA)
SCRIPTS = (SAVE, SAVE_MANY, FETCH, REMOVE, DELETE)
PING = pack("PING")


class _Shard:
    """One Redis server (or database): its link, which loads every script on each new connection."""

    def __init__(self, name: str, url: str, *, timeout: float) -> None:
        self.name = name
        self.link = RedisLink(name, url, timeout=timeout)
        for script in SCRIPTS:
            self.link.register_script(script.sha, script.source)

    async def run(self, script: Script, keys: Sequence[str], args: Sequence[Arg], subject: str) -> Any:
        """Run ``script``; its reply, or ``StorageUnavailable`` naming ``subject`` (e.g. "save of key 'k'")."""
        command = script.command(keys, args)
        try:
            reply = await self.link.execute(command)
            if isinstance(reply, ReplyError) and str(reply).startswith("NOSCRIPT"):
                # Someone flushed the script cache: the script did not run. Load it and send the call again.
                await self.link.execute(pack("SCRIPT", "LOAD", script.source))
                reply = await self.link.execute(command)
        except RedisUnavailable as exc:
            raise StorageUnavailable(f"shard {self.name}: {subject} failed: {exc}") from None
        if isinstance(reply, ReplyError):
            raise StorageUnavailable(f"shard {self.name}: {subject} failed: {reply}")
        return reply

    async def close(self) -> None:
        await self.link.close()


class RedisStorage:
    """The ``Storage`` Protocol on Redis, sharded by a ketama ring over the shard names."""

    def __init__(self, urls: Mapping[str, str], *, weights: Mapping[str, int] | None = None,
                 limits: Limits = DEFAULT_LIMITS, now_ns: Callable[[], int] = time.time_ns,
                 timeout: float = 1.0, max_connections: int = 1) -> None:
        """``max_connections`` is accepted for the config's sake: a shard needs only its one pipelined link."""
        if not urls:
            raise ValueError("RedisStorage needs at least one shard")
        weights = weights or {}
        self._shards = {name: _Shard(name, url, timeout=timeout) for name, url in urls.items()}
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
        reply = await shard.run(SAVE, _record_keys(key), self._save_args(msg, expire, self._limits.max_per_key),
                                f"save of key {key!r}")
        return int(reply)

    async def save_many(self, keys: Sequence[str], msg: bytes, expire: int) -> dict[str, int]:
        """Save ``msg`` for every key; a key whose shard fails is left out of the result (logged).

        One SAVE_MANY_LUA call per shard and chunk of SAVE_MANY_CHUNK keys, all sent in this loop pass."""
        distinct = check_save_many(keys, msg, expire, self._limits)
        by_shard: dict[str, list[str]] = {}
        for key in distinct:
            by_shard.setdefault(self.shard_of(key), []).append(key)
        args = self._save_args(msg, expire, self._limits.max_per_key)
        chunks: list[tuple[str, list[str]]] = []
        calls: list[Any] = []
        for name, shard_keys in by_shard.items():
            shard = self._shard_named(name)
            for start in range(0, len(shard_keys), SAVE_MANY_CHUNK):
                chunk = shard_keys[start:start + SAVE_MANY_CHUNK]
                record_keys = [record for key in chunk for record in _record_keys(key)]
                chunks.append((name, chunk))
                calls.append(shard.run(SAVE_MANY, record_keys, args,
                                       f"save of {len(chunk)} keys (first key {chunk[0]!r})"))
        replies = await asyncio.gather(*calls, return_exceptions=True)
        saved: dict[str, int] = {}
        for (name, chunk), reply in zip(chunks, replies):
            if isinstance(reply, BaseException):
                log.error("shard=%s key=%s: save of %d keys failed: %s", name, chunk[0], len(chunk), reply)
                continue
            for key, mid in zip(chunk, reply):
                if isinstance(mid, ReplyError):
                    log.error("shard=%s key=%s: save failed: %s", name, key, mid)
                else:
                    saved[key] = int(mid)
        return saved

    def _save_args(self, msg: bytes, expire: int, cap: int) -> list[Arg]:
        now_ns = self._now_ns()
        payload = mids.encode_payload(msg, mids.expire_at(now_ns, expire)) if expire > 0 else b""
        return [str(mids.time_id(now_ns)), expire, self._limits.mid_ttl, cap, payload]

    async def fetch(self, key: str, after_mid: int) -> FetchResult:
        check_key(key, self._limits)
        check_mid(after_mid)
        return await self._fetch(self._shard_for(key), key, MSG_KEY % key, TRIM_KEY % key, TOP_KEY % key,
                                 after_mid, f"fetch of key {key!r}")

    async def save_public(self, msg: bytes, expire: int) -> int:
        """The next public mid; ``msg`` stored in ``push:pub:msg`` (capped at ``max_public``) when expire > 0."""
        check_message(msg, expire, self._limits)
        shard = self._shard_named(self.shard_of(PUBLIC_RING_NAME))
        reply = await shard.run(SAVE, [PUBLIC_MID, PUBLIC_MSG, PUBLIC_TOP, PUBLIC_TRIM],
                                self._save_args(msg, expire, self._limits.max_public), "save of a public message")
        return int(reply)

    async def fetch_public(self, after_mid: int) -> FetchResult:
        check_mid(after_mid)
        shard = self._shard_named(self.shard_of(PUBLIC_RING_NAME))
        return await self._fetch(shard, PUBLIC_LOG_KEY, PUBLIC_MSG, PUBLIC_TRIM, PUBLIC_TOP, after_mid,
                                 "fetch of the public messages")

    async def _fetch(self, shard: _Shard, key: str, msg_name: str, trim_name: str, top_name: str, after_mid: int,
                     subject: str) -> FetchResult:
        """FETCH_LUA on one message set and its marks; expired members are dropped (and removed)."""
        members, trim, top, exists = await shard.run(FETCH, [msg_name, trim_name, top_name], [after_mid], subject)
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
            await self._remove_expired(shard, key, msg_name, trim_name, expired)
        return FetchResult(msgs, trim_mark > after_mid)

    async def _remove_expired(self, shard: _Shard, key: str, msg_name: str, trim_name: str,
                              members: list[bytes]) -> None:
        """ZREM expired members and raise the trim mark; a failure only delays it (the read already succeeded)."""
        try:
            await shard.run(REMOVE, [msg_name, trim_name], [self._limits.mid_ttl, *members],
                            f"removal of expired messages of key {key!r}")
        except StorageUnavailable as exc:
            log.warning("shard=%s key=%s: expired messages not removed: %s", shard.name, key, exc)
            return
        log.debug("key=%s: removed %d expired messages", key, len(members))

    async def delete(self, key: str) -> int:
        check_key(key, self._limits)
        shard = self._shard_for(key)
        count = await shard.run(DELETE, [MSG_KEY % key, TOP_KEY % key, TRIM_KEY % key], [],
                                f"delete of key {key!r}")
        return int(count)

    async def check_shards(self) -> list[str]:
        """PING every shard; log and return the names of those that do not answer (calls to them will fail
        fast with ``StorageUnavailable`` until they come back)."""
        down: list[str] = []
        for shard in self._shards.values():
            try:
                reply = await shard.link.execute(PING)
                if isinstance(reply, ReplyError):
                    raise RedisUnavailable(str(reply))
            except RedisUnavailable as exc:
                log.warning("shard=%s: not reachable: %s", shard.name, exc)
                down.append(shard.name)
        return down

    async def close(self) -> None:
        shards, self._shards = list(self._shards.values()), {}
        for shard in shards:
            await shard.close()


def _record_keys(key: str) -> list[str]:
    """The four records of ``key``, in the order the save scripts take them."""
    return [MID_KEY % key, MSG_KEY % key, TOP_KEY % key, TRIM_KEY % key]
