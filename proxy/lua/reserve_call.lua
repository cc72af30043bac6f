--[[ reserve_call: admit one call against everything that caps it, atomically, or deny it whole.

KEYS[1] reservations hash  (rid -> "amount|tokens|counter1|counter2…")
KEYS[2] reservation deadlines zset (rid -> deadline ms)
KEYS[3] plan request counter of this month
KEYS[4] key's requests-per-minute log zset (rid -> ms)
KEYS[5] key's tokens-per-minute log zset ("rid:tokens" -> ms)
KEYS[6] key's tokens-per-minute running sum
KEYS[7] key's in-flight zset (rid -> deadline ms)
KEYS[8…] budget counters, hashes with fields s (settled) and r (reserved), in nano-dollars
ARGV[1] rid            ARGV[2] estimate (nano-dollars)   ARGV[3] estimated tokens
ARGV[4] reservation ttl ms                                ARGV[5] plan limit (0 = none)
ARGV[6] plan counter expiry (unix s)                     ARGV[7] requests/minute (0 = none)
ARGV[8] tokens/minute (0 = none)                          ARGV[9] max concurrent (0 = none)
ARGV[10] seeded marker key ("" = not required)            ARGV[11] number of budgets n
then per budget i (1…n): limit (nano-dollars), hard (1/0), counter expiry (unix s, 0 = never), scope name
Returns {"ok"} or {"deny", scope, retry_after_ms (-1 = unknown)} or {"unseeded"}.
All keys share the account's hash tag, so this also runs on Redis Cluster.
]]
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local rsv, rsvz = KEYS[1], KEYS[2]

-- Give back what crashed processes reserved and never settled.
local expired = redis.call('ZRANGEBYSCORE', rsvz, '-inf', now, 'LIMIT', 0, 25)
for _, id in ipairs(expired) do
  local rec = redis.call('HGET', rsv, id)
  if rec then
    local parts = {}
    for part in string.gmatch(rec, '[^|]+') do parts[#parts + 1] = part end
    local amount = tonumber(parts[1])
    for j = 3, #parts do redis.call('HINCRBY', parts[j], 'r', -amount) end
    redis.call('HDEL', rsv, id)
  end
  redis.call('ZREM', rsvz, id)
end

if ARGV[10] ~= '' and redis.call('EXISTS', ARGV[10]) == 0 then
  return {'unseeded'}
end

local rid = ARGV[1]
local estimate = tonumber(ARGV[2])
local tokens = tonumber(ARGV[3])
local ttl = tonumber(ARGV[4])
local plan_limit = tonumber(ARGV[5])
local rpm, tpm, conc = tonumber(ARGV[7]), tonumber(ARGV[8]), tonumber(ARGV[9])
local n = tonumber(ARGV[11])

if plan_limit > 0 and tonumber(redis.call('GET', KEYS[3]) or '0') >= plan_limit then
  return {'deny', 'plan', (tonumber(ARGV[6]) * 1000) - now}
end
if rpm > 0 then
  redis.call('ZREMRANGEBYSCORE', KEYS[4], '-inf', now - 60000)
  if redis.call('ZCARD', KEYS[4]) >= rpm then
    local oldest = redis.call('ZRANGE', KEYS[4], 0, 0, 'WITHSCORES')
    return {'deny', 'rate_requests', tonumber(oldest[2]) + 60000 - now}
  end
end
if tpm > 0 then
  local old = redis.call('ZRANGEBYSCORE', KEYS[5], '-inf', now - 60000)
  if #old > 0 then
    local freed = 0
    for _, member in ipairs(old) do freed = freed + tonumber(string.match(member, ':(%d+)$')) end
    redis.call('ZREMRANGEBYSCORE', KEYS[5], '-inf', now - 60000)
    redis.call('DECRBY', KEYS[6], freed)
  end
  local used = tonumber(redis.call('GET', KEYS[6]) or '0')
  if used + tokens > tpm then
    local oldest = redis.call('ZRANGE', KEYS[5], 0, 0, 'WITHSCORES')
    local retry = -1
    if oldest[2] then retry = tonumber(oldest[2]) + 60000 - now end
    return {'deny', 'rate_tokens', retry}
  end
end
if conc > 0 then
  redis.call('ZREMRANGEBYSCORE', KEYS[7], '-inf', now)
  if redis.call('ZCARD', KEYS[7]) >= conc then
    return {'deny', 'rate_concurrency', 1000}
  end
end
for i = 1, n do
  local base = 11 + (i - 1) * 4
  if ARGV[base + 2] == '1' then
    local c = redis.call('HMGET', KEYS[7 + i], 's', 'r')
    local spent = (tonumber(c[1]) or 0) + (tonumber(c[2]) or 0)
    if spent + estimate > tonumber(ARGV[base + 1]) then
      local expiry = tonumber(ARGV[base + 3])
      local retry = -1
      if expiry > 0 then retry = expiry * 1000 - now end
      return {'deny', ARGV[base + 4], retry}
    end
  end
end

-- Everything admits: record it all.
if plan_limit > 0 then
  redis.call('INCR', KEYS[3])
  redis.call('EXPIREAT', KEYS[3], ARGV[6])
end
if rpm > 0 then
  redis.call('ZADD', KEYS[4], now, rid)
  redis.call('PEXPIRE', KEYS[4], 61000)
end
if tpm > 0 then
  redis.call('ZADD', KEYS[5], now, rid .. ':' .. tokens)
  redis.call('INCRBY', KEYS[6], tokens)
  redis.call('PEXPIRE', KEYS[5], 61000)
  redis.call('PEXPIRE', KEYS[6], 61000)
end
if conc > 0 then
  redis.call('ZADD', KEYS[7], now + ttl, rid)
  redis.call('PEXPIRE', KEYS[7], ttl)
end
local rec = {tostring(estimate), tostring(tokens)}
for i = 1, n do
  local key = KEYS[7 + i]
  redis.call('HINCRBY', key, 'r', estimate)
  local expiry = tonumber(ARGV[11 + (i - 1) * 4 + 3])
  if expiry > 0 then redis.call('EXPIREAT', key, expiry) end
  rec[#rec + 1] = key
end
redis.call('HSET', rsv, rid, table.concat(rec, '|'))
redis.call('ZADD', rsvz, now + ttl, rid)
return {'ok'}
