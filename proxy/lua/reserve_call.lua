--[[ reserve_call: admit one call against everything that caps it, atomically, or deny it whole.

KEYS[1] reservations hash  (rid -> "amount|tokens|" .. cjson array of its counter keys)
KEYS[2] reservation deadlines zset (rid -> deadline ms)
KEYS[3] plan request counter of this month
KEYS[4] key's requests-per-minute log zset (rid -> ms)
KEYS[5] key's tokens-per-minute log zset ("rid:tokens" -> ms)
KEYS[6] key's tokens-per-minute running sum
KEYS[7] key's in-flight zset (rid -> deadline ms)
KEYS[8] the account's seeded set (fingerprints of the budget layouts whose counters were seeded)
KEYS[9…] budget counters, hashes with fields s (settled) and r (reserved), in nano-dollars
ARGV[1] rid            ARGV[2] estimate (nano-dollars)   ARGV[3] estimated tokens
ARGV[4] reservation ttl ms                                ARGV[5] plan limit (0 = none)
ARGV[6] plan period end (unix s)                          ARGV[7] plan counter expiry (unix s)
ARGV[8] requests/minute (0 = none)  ARGV[9] tokens/minute (0 = none)  ARGV[10] max concurrent (0 = none)
ARGV[11] budget layout fingerprint that must be seeded ("" = none required)
ARGV[12] number of budgets n
then per budget i (1…n): limit (nano-dollars), hard (1/0), counter expiry (unix s, 0 = never),
period end (unix s, 0 = never), scope name
then, optionally (budget-aware downgrade), m, and per downgrade j (1…m): budget index i, threshold
(nano-dollars), the estimate of the downgrade target: the first budget whose counter (settled + reserved)
is at or past its threshold makes the call reserve that estimate instead (the caps are checked with it).
Returns {"ok", downgraded budget index (0 = none)} or {"deny", scope, retry_after_ms (-1 = never resets)}
or {"unseeded"}.
Nothing is written unless every check passes. A counter that does not exist yet (a new period, a
tenant never seen under '*') is created here, so the first burst of a new scope is capped too.
All keys share the account's hash tag, so this also runs on Redis Cluster.
]]
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local rsv, rsvz = KEYS[1], KEYS[2]
local FIRST_COUNTER = 8
local FIRST_BUDGET_ARG = 12
local MINUTE = 60000

local prefix = string.sub(rsv, 1, #rsv - #':rsv')

-- The counters a reservation record names. They are JSON, never split on a character: the keys end in
-- client values (encoded, but this must not depend on it). A record of the older "amount|tokens|k1|k2"
-- form names counters no longer kept under those keys, so it names none.
local function record_counters(json)
  if string.sub(json, 1, 1) ~= '[' then return {} end
  local ok, keys = pcall(cjson.decode, json)
  if not ok or type(keys) ~= 'table' then return {} end
  return keys
end

-- Give back what crashed processes reserved and never settled.
local expired = redis.call('ZRANGEBYSCORE', rsvz, '-inf', now, 'LIMIT', 0, 25)
for _, id in ipairs(expired) do
  local rec = redis.call('HGET', rsv, id)
  if rec then
    local amount, json = string.match(rec, '^(%-?%d+)|%d+|(.*)$')
    for _, key in ipairs(json and record_counters(json) or {}) do
      -- Only this account's counters; one that already expired stays gone rather than coming back without a TTL.
      if type(key) == 'string' and string.sub(key, 1, #prefix + 1) == prefix .. ':'
          and redis.call('EXISTS', key) == 1 then
        redis.call('HINCRBY', key, 'r', 0 - tonumber(amount))  -- never -0: HINCRBY refuses it
      end
    end
    redis.call('HDEL', rsv, id)
  end
  redis.call('ZREM', rsvz, id)
end

if ARGV[11] ~= '' and redis.call('SISMEMBER', KEYS[8], ARGV[11]) == 0 then
  return {'unseeded'}
end

local rid = ARGV[1]
local estimate = tonumber(ARGV[2])
local tokens = tonumber(ARGV[3])
local ttl = tonumber(ARGV[4])
local plan_limit = tonumber(ARGV[5])
local rpm, tpm, conc = tonumber(ARGV[8]), tonumber(ARGV[9]), tonumber(ARGV[10])
local n = tonumber(ARGV[12])

if plan_limit > 0 and tonumber(redis.call('GET', KEYS[3]) or '0') >= plan_limit then
  return {'deny', 'plan', math.max(0, tonumber(ARGV[6]) * 1000 - now)}
end
if rpm > 0 then
  redis.call('ZREMRANGEBYSCORE', KEYS[4], '-inf', now - MINUTE)
  if redis.call('ZCARD', KEYS[4]) >= rpm then
    local oldest = redis.call('ZRANGE', KEYS[4], 0, 0, 'WITHSCORES')
    return {'deny', 'rate_requests', math.max(0, tonumber(oldest[2]) + MINUTE - now)}
  end
end
if tpm > 0 then
  local old = redis.call('ZRANGEBYSCORE', KEYS[5], '-inf', now - MINUTE)
  if #old > 0 then
    local freed = 0
    for _, member in ipairs(old) do freed = freed + tonumber(string.match(member, ':(%d+)$')) end
    redis.call('ZREMRANGEBYSCORE', KEYS[5], '-inf', now - MINUTE)
    redis.call('DECRBY', KEYS[6], freed)
  end
  local used = tonumber(redis.call('GET', KEYS[6]) or '0')
  if used + tokens > tpm then
    local oldest = redis.call('ZRANGE', KEYS[5], 0, 0, 'WITHSCORES')
    -- A call larger than the whole limit gets a minute: by then the window is empty at least.
    local retry = MINUTE
    if oldest[2] then retry = math.max(0, tonumber(oldest[2]) + MINUTE - now) end
    return {'deny', 'rate_tokens', retry}
  end
end
if conc > 0 then
  redis.call('ZREMRANGEBYSCORE', KEYS[7], '-inf', now)
  if redis.call('ZCARD', KEYS[7]) >= conc then
    return {'deny', 'rate_concurrency', 1000}
  end
end
-- Budget-aware downgrade: past a budget's threshold the call is served by a cheaper target, and reserves that.
local estimate_arg = ARGV[2]
local downgraded = 0
local first_downgrade = FIRST_BUDGET_ARG + n * 5 + 1
local m = tonumber(ARGV[first_downgrade] or '0')
for j = 1, m do
  local base = first_downgrade + (j - 1) * 3
  local i = tonumber(ARGV[base + 1])
  local c = redis.call('HMGET', KEYS[FIRST_COUNTER + i], 's', 'r')
  if (tonumber(c[1]) or 0) + (tonumber(c[2]) or 0) >= tonumber(ARGV[base + 2]) then
    downgraded = i
    estimate_arg = ARGV[base + 3]
    estimate = tonumber(estimate_arg)
    break
  end
end
for i = 1, n do
  local base = FIRST_BUDGET_ARG + (i - 1) * 5
  if ARGV[base + 2] == '1' then
    local c = redis.call('HMGET', KEYS[FIRST_COUNTER + i], 's', 'r')
    local spent = (tonumber(c[1]) or 0) + (tonumber(c[2]) or 0)
    if spent + estimate > tonumber(ARGV[base + 1]) then
      local period_end = tonumber(ARGV[base + 4])
      local retry = -1
      if period_end > 0 then retry = math.max(0, period_end * 1000 - now) end
      return {'deny', ARGV[base + 5], retry}
    end
  end
end

-- Everything admits: record it all.
if plan_limit > 0 then
  redis.call('INCR', KEYS[3])
  redis.call('EXPIREAT', KEYS[3], ARGV[7])
end
if rpm > 0 then
  redis.call('ZADD', KEYS[4], now, rid)
  redis.call('PEXPIRE', KEYS[4], MINUTE + 1000)
end
-- Amounts are written as the caller spelt them: tostring() of a Lua number switches to exponent
-- notation from 10^14, which neither HINCRBY nor the settle script's parsing accepts.
if tpm > 0 then
  redis.call('ZADD', KEYS[5], now, rid .. ':' .. ARGV[3])
  redis.call('INCRBY', KEYS[6], ARGV[3])
  redis.call('PEXPIRE', KEYS[5], MINUTE + 1000)
  redis.call('PEXPIRE', KEYS[6], MINUTE + 1000)
end
if conc > 0 then
  redis.call('ZADD', KEYS[7], now + ttl, rid)
  redis.call('PEXPIRE', KEYS[7], ttl)
end
local counters = {}
for i = 1, n do
  local key = KEYS[FIRST_COUNTER + i]
  redis.call('HINCRBY', key, 'r', estimate_arg)
  local expiry = tonumber(ARGV[FIRST_BUDGET_ARG + (i - 1) * 5 + 3])
  if expiry > 0 then redis.call('EXPIREAT', key, expiry) end
  counters[#counters + 1] = key
end
local listed = '[]'  -- cjson writes an empty table as {}
if n > 0 then listed = cjson.encode(counters) end
-- The amounts as sent: tostring would write a large one as 1.2e+15, which no reader parses.
redis.call('HSET', rsv, rid, estimate_arg .. '|' .. ARGV[3] .. '|' .. listed)
redis.call('ZADD', rsvz, now + ttl, rid)
return {'ok', downgraded}
