--[[ store_cache_entry: keep one sealed answer of the response cache, within the account's size cap.

KEYS[1] the entry (string, sealed bytes, expires with its TTL)
KEYS[2] the account's index (zset: entry name -> expiry ms)
KEYS[3] the account's sizes (hash: entry name -> bytes, and "total" -> their sum)
ARGV[1] entry name   ARGV[2] sealed bytes   ARGV[3] ttl ms   ARGV[4] now ms
ARGV[5] the account's cap (bytes)            ARGV[6] the prefix of entry keys (KEYS[1] less the name)
Returns the number of entries evicted to make room.
Entries past their expiry are forgotten first (Redis already dropped their bytes); then the entries
nearest their expiry (with one TTL for all, the oldest) are removed until the new one fits the cap.
Every key shares the account's hash tag, so this also runs on Redis Cluster.
]]
local name, blob = ARGV[1], ARGV[2]
local ttl, now, cap, prefix = tonumber(ARGV[3]), tonumber(ARGV[4]), tonumber(ARGV[5]), ARGV[6]
local index, sizes = KEYS[2], KEYS[3]
local size = string.len(blob)

local function forget(member)
  local bytes = tonumber(redis.call('HGET', sizes, member) or '0')
  redis.call('HDEL', sizes, member)
  redis.call('HINCRBY', sizes, 'total', -bytes)
  redis.call('ZREM', index, member)
end

for _, member in ipairs(redis.call('ZRANGEBYSCORE', index, '-inf', now)) do
  forget(member)
end
if redis.call('ZSCORE', index, name) then
  forget(name)  -- stored again (two misses raced): replaced, counted once
end
local evicted = 0
local total = tonumber(redis.call('HGET', sizes, 'total') or '0')
while total + size > cap do
  local oldest = redis.call('ZRANGE', index, 0, 0)[1]
  if not oldest then break end
  redis.call('DEL', prefix .. oldest)
  forget(oldest)
  evicted = evicted + 1
  total = tonumber(redis.call('HGET', sizes, 'total') or '0')
end
local expiry = now + ttl
redis.call('SET', KEYS[1], blob, 'PX', ttl)
redis.call('ZADD', index, expiry, name)
redis.call('HSET', sizes, name, size)
redis.call('HINCRBY', sizes, 'total', size)
-- The index and sizes live as long as their last entry.
local keep = redis.call('PTTL', index)
if keep < ttl then
  redis.call('PEXPIRE', index, ttl)
  redis.call('PEXPIRE', sizes, ttl)
end
return evicted
