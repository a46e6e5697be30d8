"""The Lua scripts of the Redis message store (``message.redis_storage`` runs each with EVALSHA).

They work on the four records of a message log, passed as KEYS (a key K's ``push:*:{K}`` records, or the public
log's ``push:pub:*`` ones, so the same scripts serve both); every script reads and writes these formats:

``mid``    string, the last mid assigned (decimal, no leading zeros). It outlives the messages: its TTL is only
           ever raised, to max(mid_ttl, the longest expire), so mids stay increasing across trims and expiry.
``msg``    sorted set, score = mid (Redis rounds it to a double, so neighbouring mids may share a score), member =
           the mid as 19 zero-padded digits followed by the stored payload (msgpack ``{"msg", "expire"}``, see
           ``message.mid``). Equal scores sort by member bytes, i.e. by the exact mid, which is read back from the
           first 19 bytes. EXPIRE = the longest stored lifetime + 1.
``top``    string, the highest stored mid (19 digits), so a set that expired as a whole counts as trimmed.
``trim``   string, the highest mid removed by the cap or by expiry (19 digits); only ever raised.
``DELETE_LUA`` removes ``msg``, ``top`` and ``trim``, never ``mid``.

Lua numbers are doubles and cannot hold a mid, so the scripts keep mids as strings: decimal ones compare by length
then bytes (``greater``), 19-digit ones as plain bytes; the next mid is made with INCR and read back with GET. A
TTL is never shortened (``extend_ttl``). Each text's comment gives its KEYS, ARGV and reply.
"""
from __future__ import annotations

__all__ = ["DELETE_LUA", "FETCH_LUA", "REMOVE_LUA", "SAVE_LUA", "SAVE_MANY_LUA"]

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

_LUA_SAVE_ONE = """
local function save_one(k_mid, k_msg, k_top, k_trim, now_id, expire, record_ttl, cap, payload)
  local last = redis.call('GET', k_mid)
  local mid = now_id
  if last and not greater(now_id, last) then
    redis.call('INCR', k_mid)
    mid = redis.call('GET', k_mid)
  else
    redis.call('SET', k_mid, mid, 'KEEPTTL')
  end
  extend_ttl(k_mid, record_ttl)
  if expire > 0 then
    if redis.call('EXISTS', k_msg) == 0 then
      local top = redis.call('GET', k_top)
      if top then raise_trim(k_trim, top, record_ttl) end
    end
    redis.call('ZADD', k_msg, mid, pad(mid) .. payload)
    redis.call('SET', k_top, pad(mid), 'KEEPTTL')
    extend_ttl(k_top, record_ttl)
    local count = redis.call('ZCARD', k_msg)
    if count > cap then
      local gone = redis.call('ZRANGE', k_msg, 0, count - cap - 1)
      redis.call('ZREMRANGEBYRANK', k_msg, 0, count - cap - 1)
      raise_trim(k_trim, string.sub(gone[#gone], 1, 19), record_ttl)
    end
    extend_ttl(k_msg, expire + 1)
  end
  return mid
end
local now_id, expire, payload = ARGV[1], tonumber(ARGV[2]), ARGV[5]
local record_ttl = math.max(expire, tonumber(ARGV[3]))
local cap = tonumber(ARGV[4])
"""

# KEYS: mid, msg, top, trim.  ARGV: now_id, expire, mid_ttl, max_per_key, payload.  Returns the mid (string).
SAVE_LUA = _LUA_HELPERS + _LUA_SAVE_ONE + """
return save_one(KEYS[1], KEYS[2], KEYS[3], KEYS[4], now_id, expire, record_ttl, cap, payload)
"""

# KEYS: mid, msg, top, trim of key 1, then of key 2, ...  ARGV: as SAVE_LUA (one message, one now_id).
# Returns one element per key: its mid (string), or an error reply for a key whose save failed (the others stand).
SAVE_MANY_LUA = _LUA_HELPERS + _LUA_SAVE_ONE + """
local mids = {}
for i = 1, #KEYS, 4 do
  local ok, mid = pcall(save_one, KEYS[i], KEYS[i + 1], KEYS[i + 2], KEYS[i + 3], now_id, expire, record_ttl, cap,
                        payload)
  if ok then
    mids[#mids + 1] = mid
  elseif type(mid) == 'table' and mid.err then
    mids[#mids + 1] = mid
  else
    mids[#mids + 1] = redis.error_reply(tostring(mid))
  end
end
return mids
"""

# KEYS: msg, trim, top.  ARGV: the asked mid (a score: members with a rounded score equal to it come back too).
# Returns {members >= ARGV[1] by score, trim mark or nil, top or nil, 1 if the set exists else 0}, read atomically.
FETCH_LUA = """
local members = redis.call('ZRANGEBYSCORE', KEYS[1], ARGV[1], '+inf')
local exists = 1
if #members == 0 then exists = redis.call('EXISTS', KEYS[1]) end
return {members, redis.call('GET', KEYS[2]) or false, redis.call('GET', KEYS[3]) or false, exists}
"""

# KEYS: msg, top, trim.  Deletes a key's messages and marks (not its last mid); returns how many messages it had.
DELETE_LUA = """
local count = redis.call('ZCARD', KEYS[1])
redis.call('DEL', KEYS[1], KEYS[2], KEYS[3])
return count
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
