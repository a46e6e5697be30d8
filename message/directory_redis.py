"""RedisDirectory: the tag/alias directory on ONE Redis shard (the message ring's shard for ``push:dir``).

Records (no expiry: the back end clears a key's tags and alias when its user leaves):

``push:dir:ktags:<key>``    SET, the key's tags
``push:dir:tag:<tag>``      ZSET, score 0, members = the keys with the tag (equal scores sort by bytes, so
                            ZRANGEBYLEX walks them in key order)
``push:dir:alias:<alias>``  STRING, the key that has the alias
``push:dir:kalias:<key>``   STRING, the key's alias

Every update is one Lua script (``SET_TAGS_LUA``, ``SET_ALIAS_LUA``), so the records never disagree. Keeping the
whole directory on one shard is what makes that possible (a key's tag sets live with every other key's); the
price is that the directory's size and update rate are one Redis server's. The scripts name records they read
(a key's old tags, an alias's holder), so they need a plain Redis server, not a Redis Cluster.

``TAG_KEYS_LUA`` resolves a page of an expression with a stateless cursor: for each AND-group it walks the
group's smallest tag set with ZRANGEBYLEX from the cursor in chunks, keeps the members found in the group's other
sets (ZSCORE), and stops at ``count`` matches, at the end of the set, at the bound the earlier groups reached, or
when the group's share of ``scan_budget`` steps (a member read or a ZSCORE) is used up. Every group is then known
complete up to the lowest point a group stopped at; the union of the matches up to there is sorted here and cut
to ``count``. A page cut short by the budget is shorter than ``count`` but never wrong: its ``next`` is the last
key looked at, and the caller continues from there. The scripts never order keys themselves (Lua's ``<`` on
strings follows the server's collation locale, not bytes): the walk's bound comes from ZRANGEBYLEX, and the
matches are sorted here.
"""
from __future__ import annotations

import logging
from typing import Any, Mapping, Sequence

from message.directory import (DEFAULT_DIRECTORY_LIMITS, AliasChange, DirectoryLimits, KeyInfo, TagPage,
                               check_set_alias, check_alias, check_tag_query, check_tags, describe)
from message.redis_link import Arg, RedisLink, RedisUnavailable, ReplyError, pack
from message.redis_storage import Script
from message.storage import StorageUnavailable, check_key
from thirdparty.ring import Ring

log = logging.getLogger(__name__)

SHARD_NAME = "push:dir"          # the ring picks the directory's shard by this name
PREFIX = "push:dir:"
KEY_TAGS = PREFIX + "ktags:%s"
TAG_KEYS = PREFIX + "tag:%s"
ALIAS = PREFIX + "alias:%s"
KEY_ALIAS = PREFIX + "kalias:%s"
SCAN_BUDGET = 8192   # steps (member reads + ZSCOREs) of one tag_keys call, shared by its groups
SCAN_CHUNK = 256     # members per ZRANGEBYLEX

# KEYS: ktags of the key.  ARGV: key, then the new tags (distinct).  Replaces the key's tags, updating only the
# tag sets that change.
SET_TAGS_LUA = """
local key = ARGV[1]
local new = {}
for i = 2, #ARGV do new[ARGV[i]] = true end
for _, tag in ipairs(redis.call('SMEMBERS', KEYS[1])) do
  if new[tag] then new[tag] = nil
  else
    redis.call('SREM', KEYS[1], tag)
    redis.call('ZREM', 'push:dir:tag:' .. tag, key)
  end
end
for tag in pairs(new) do
  redis.call('SADD', KEYS[1], tag)
  redis.call('ZADD', 'push:dir:tag:' .. tag, 0, key)
end
return redis.call('SCARD', KEYS[1])
"""

# KEYS: kalias:<key>, then alias:<alias> unless removing.  ARGV: key, alias ("" removes the key's alias).
# Returns {alias or nil, key it moved from or nil, the key's replaced alias or nil}.
SET_ALIAS_LUA = """
local key, alias = ARGV[1], ARGV[2]
local old = redis.call('GET', KEYS[1])
if alias == '' then
  if old then redis.call('DEL', KEYS[1], 'push:dir:alias:' .. old) end
  return {false, false, old}
end
local holder = redis.call('GET', KEYS[2])
if holder == key then return {alias, false, false} end
if holder then redis.call('DEL', 'push:dir:kalias:' .. holder) end
if old then redis.call('DEL', 'push:dir:alias:' .. old) end
redis.call('SET', KEYS[2], key)
redis.call('SET', KEYS[1], alias)
return {alias, holder, old}
"""

# KEYS: ktags, kalias of the key.  Returns {tags, alias or nil}, read in one step.
KEY_INFO_LUA = """
return {redis.call('SMEMBERS', KEYS[1]), redis.call('GET', KEYS[2])}
"""

# KEYS: the tag sets of group 1, then of group 2, ...  ARGV: after ("" = from the start), count, budget, chunk,
# then the number of tags of each group.  Returns {matches (unordered, distinct), bound or nil}: every group is
# complete up to bound (inclusive; nil = to the end), and only matches <= bound are returned.
TAG_KEYS_LUA = """
local after, count = ARGV[1], tonumber(ARGV[2])
local groups = #ARGV - 4
local share = math.max(1, math.floor(tonumber(ARGV[3]) / groups))
local chunk = tonumber(ARGV[4])
local start = '-'
if after ~= '' then start = '(' .. after end
local bound = nil
local found, matches = {}, {}
local first = 1
for g = 1, groups do
  local size = tonumber(ARGV[4 + g])
  local sets = {}
  for i = first, first + size - 1 do sets[#sets + 1] = {KEYS[i], redis.call('ZCARD', KEYS[i])} end
  first = first + size
  table.sort(sets, function(a, b) return a[2] < b[2] end)
  if sets[1][2] > 0 then
    local from, left, hits, stop = start, share, {}, nil
    local upto = '+'
    if bound then upto = '[' .. bound end
    while true do
      local want = math.min(chunk, left)
      local members = redis.call('ZRANGEBYLEX', sets[1][1], from, upto, 'LIMIT', 0, want)
      for _, member in ipairs(members) do
        left = left - 1
        local hit = true
        for j = 2, #sets do
          left = left - 1
          if not redis.call('ZSCORE', sets[j][1], member) then hit = false; break end
        end
        if hit then hits[#hits + 1] = member end
        if #hits >= count or left <= 0 then stop = member; break end
      end
      if stop or #members < want then break end
      from = '(' .. members[#members]
    end
    if stop then bound = stop end
    for _, member in ipairs(hits) do
      if not found[member] then found[member] = true; matches[#matches + 1] = member end
    end
  end
end
return {matches, bound or false}
"""

SET_TAGS = Script("set tags", SET_TAGS_LUA)
SET_ALIAS = Script("set alias", SET_ALIAS_LUA)
KEY_INFO = Script("key info", KEY_INFO_LUA)
TAG_KEYS_SCRIPT = Script("tag keys", TAG_KEYS_LUA)
SCRIPTS = (SET_TAGS, SET_ALIAS, KEY_INFO, TAG_KEYS_SCRIPT)


def directory_shard(urls: Mapping[str, str], weights: Mapping[str, int] | None = None) -> str:
    """The name of the shard that holds the directory: the message ring's choice for ``push:dir``."""
    weights = weights or {}
    name = Ring({name: weights.get(name, 1) for name in urls}).get(SHARD_NAME)
    assert name is not None, "the ring is built from a non-empty shard map"
    return name


class RedisDirectory:
    """The ``Directory`` Protocol on the message store's Redis shards (all of it on one of them)."""

    def __init__(self, urls: Mapping[str, str], *, weights: Mapping[str, int] | None = None,
                 limits: DirectoryLimits = DEFAULT_DIRECTORY_LIMITS, timeout: float = 1.0,
                 scan_budget: int = SCAN_BUDGET, scan_chunk: int = SCAN_CHUNK) -> None:
        if not urls:
            raise ValueError("RedisDirectory needs at least one shard")
        self.shard = directory_shard(urls, weights)
        self._link = RedisLink(self.shard, urls[self.shard], timeout=timeout)
        for script in SCRIPTS:
            self._link.register_script(script.sha, script.source)
        self._limits = limits
        self._budget = max(1, scan_budget)
        self._chunk = max(1, scan_chunk)
        self._closed = False

    async def set_tags(self, key: str, tags: Sequence[str]) -> list[str]:
        distinct = check_tags(key, tags, self._limits)
        await self._run(SET_TAGS, [KEY_TAGS % key], [key, *distinct], f"set tags of key {key!r}")
        log.debug("key=%s: %d tags set", key, len(distinct))
        return distinct

    async def set_alias(self, key: str, alias: str) -> AliasChange:
        check_set_alias(key, alias, self._limits)
        names = [KEY_ALIAS % key, ALIAS % alias] if alias else [KEY_ALIAS % key]
        reply = await self._run(SET_ALIAS, names, [key, alias], f"set alias of key {key!r}")
        change = AliasChange(*(_text(item) for item in reply))
        if change.moved_from is not None:
            log.info("key=%s alias=%s: alias moved from key %s", key, alias, change.moved_from)
        return change

    async def key_info(self, key: str) -> KeyInfo:
        check_key(key, self._limits.keys)
        tags, alias = await self._run(KEY_INFO, [KEY_TAGS % key, KEY_ALIAS % key], [], f"info of key {key!r}")
        return KeyInfo(sorted(_text(tag) or "" for tag in tags), _text(alias))

    async def alias_key(self, alias: str) -> str | None:
        check_alias(alias, self._limits)
        subject = f"lookup of alias {alias!r}"
        reply = await self._command(pack("GET", ALIAS % alias), subject)
        if isinstance(reply, ReplyError):
            raise StorageUnavailable(f"shard {self.shard}: directory {subject} failed: {reply}")
        return _text(reply)

    async def tag_keys(self, expr: Sequence[Sequence[str]], after: str, count: int) -> TagPage:
        groups = check_tag_query(expr, after, count, self._limits)
        names = [TAG_KEYS % tag for group in groups for tag in group]
        args: list[Arg] = [after, count, self._budget, self._chunk, *(len(group) for group in groups)]
        found, bound = await self._run(TAG_KEYS_SCRIPT, names, args, f"tag keys of {describe(groups)}")
        bound = _text(bound)
        keys = sorted(_text(key) or "" for key in found)
        if bound is not None:
            keys = [key for key in keys if key <= bound]
        if len(keys) > count:
            return TagPage(keys[:count], keys[count - 1])
        if bound is None:            # every group walked to its end: nothing more matches
            return TagPage(keys, None)
        return TagPage(keys, keys[-1] if len(keys) == count else bound)  # short: continue after what was seen

    async def close(self) -> None:
        if not self._closed:
            self._closed = True
            await self._link.close()

    async def _run(self, script: Script, keys: Sequence[str], args: Sequence[Arg], subject: str) -> Any:
        """Run ``script`` (loading it again after a ``NOSCRIPT``); ``StorageUnavailable`` naming ``subject``."""
        command = script.command(keys, args)
        reply = await self._command(command, subject)
        if isinstance(reply, ReplyError) and str(reply).startswith("NOSCRIPT"):
            await self._command(pack("SCRIPT", "LOAD", script.source), subject)
            reply = await self._command(command, subject)
        if isinstance(reply, ReplyError):
            raise StorageUnavailable(f"shard {self.shard}: directory {subject} failed: {reply}")
        return reply

    async def _command(self, command: bytes, subject: str) -> Any:
        if self._closed:
            raise StorageUnavailable(f"directory {subject}: the directory is closed")
        try:
            return await self._link.execute(command)
        except RedisUnavailable as exc:
            raise StorageUnavailable(f"shard {self.shard}: directory {subject} failed: {exc}") from None


def _text(value: Any) -> str | None:
    """A bulk reply as str (keys, tags and aliases are checked UTF-8 on the way in); nil as None."""
    if value is None or value is False:
        return None
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    return str(value)
