--[[ flush_leases: one worker's batch for one account — settle what calls admitted from its leases
spent, give back lease room it no longer wants, grant the room it asks for where the caps allow, and
queue the usage events — atomically, once per batch.

A lease is room a worker holds on a counter. Room on a budget counter is reserved room: it is in the
counter's `r` (and, for the budgets page, in `l`), so a hard cap counts it exactly like a call's
reservation. Room on the plan request counter is requests already counted. A lease record lives in the
account's lease hash (field "worker|counter key" -> amount held) with a deadline in the lease zset; a
record past its deadline (a dead worker) is swept here and by reserve_call.lua, giving its room back.

KEYS[1] lease hash   KEYS[2] lease deadlines zset   KEYS[3] active workers zset (worker -> last flush ms)
KEYS[4] the account's usage event stream   KEYS[5] the worker's applied-batch marker (last sequence number)
KEYS[6] the account's seeded set
KEYS[7…6+n] counters   then the value indexes of the '*' budgets among them, in counter order
ARGV[1] worker id (no '|')   ARGV[2] lease ttl ms   ARGV[3] lease fraction (0…1, as text)
ARGV[4] budget layout fingerprint that must be seeded for any grant ("" = none required)
ARGV[5] the batch's sequence number (a worker's batches reach Redis in order: one applied before is skipped)
ARGV[6] number of counters n   ARGV[7] number of events m
then per counter i (10 values): kind ("h" hard budget, "s" soft budget, "p" plan requests),
  expected (what the worker believes its record holds after this batch; unused here, it shows a worker's
  view in MONITOR output), spent (actual nano-dollars settled, or requests
  used, since the last batch), release (room it gives back), want (more room it asks for),
  min grant (a smaller grant is refused: not worth a lease), limit, expiry (unix s, 0 = never),
  value token ("" = not a '*' counter), spare (unused)
then m usage events.
Returns {"dup", {held now per counter}} when this batch was applied before, else
{"ok", seeded (1/0), {per counter: held before, held after, granted, cap}}: cap is the free room one worker
may hold now (the worker gives back what it holds beyond it on its next batch); an unseeded layout
grants nothing.
]]
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local lh, lz, workers = KEYS[1], KEYS[2], KEYS[3]
local FIRST_COUNTER = 7
local FIRST_ARG = 8
local PER = 10
local worker = ARGV[1]
local ttl = tonumber(ARGV[2])
local fraction = tonumber(ARGV[3])
local n, m = tonumber(ARGV[6]), tonumber(ARGV[7])
local prefix = string.sub(lh, 1, #lh - #':lease')

-- Amounts as integers in text: a Lua number handed to redis.call is written in exponent notation from
-- 10^14 (tostring), which HINCRBY refuses.
local function int(x)
  return string.format('%.0f', x)
end

local function is_plan(key)
  return string.sub(key, #prefix + 1, #prefix + 6) == ':plan:'
end

-- Give back the room of leases whose worker stopped renewing them.
local dead = redis.call('ZRANGEBYSCORE', lz, '-inf', now, 'LIMIT', 0, 25)
for _, field in ipairs(dead) do
  local amount = tonumber(redis.call('HGET', lh, field) or '0')
  local key = string.match(field, '^[^|]*|(.*)$')
  if amount > 0 and key and string.sub(key, 1, #prefix + 1) == prefix .. ':' and redis.call('EXISTS', key) == 1 then
    if is_plan(key) then
      redis.call('DECRBY', key, int(amount))
    else
      redis.call('HINCRBY', key, 'r', int(0 - amount))
      if redis.call('HINCRBY', key, 'l', int(0 - amount)) <= 0 then redis.call('HDEL', key, 'l', 'q') end
    end
  end
  redis.call('HDEL', lh, field)
  redis.call('ZREM', lz, field)
end

-- A batch sent again (its reply was lost, or a drainer replays a dead worker's spool) is applied once.
local last = redis.call('GET', KEYS[5])
if last and tonumber(last) >= tonumber(ARGV[5]) then
  local held = {}
  for i = 1, n do
    held[i] = tonumber(redis.call('HGET', lh, ARGV[1] .. '|' .. KEYS[FIRST_COUNTER + i - 1]) or '0')
  end
  return {'dup', held}
end
redis.call('SET', KEYS[5], ARGV[5], 'PX', 86400000)

redis.call('ZADD', workers, now, worker)
redis.call('ZREMRANGEBYSCORE', workers, '-inf', now - 2000)
redis.call('PEXPIRE', workers, 60000)
local active = math.max(1, redis.call('ZCARD', workers))
local seeded = ARGV[4] == '' or redis.call('SISMEMBER', KEYS[6], ARGV[4]) == 1

local out = {}
local index = FIRST_COUNTER + n
for i = 1, n do
  local key = KEYS[FIRST_COUNTER + i - 1]
  local base = FIRST_ARG + (i - 1) * PER
  local kind = ARGV[base]
  local spent, release, want = tonumber(ARGV[base + 2]), tonumber(ARGV[base + 3]), tonumber(ARGV[base + 4])
  local min_grant, limit, expiry = tonumber(ARGV[base + 5]), tonumber(ARGV[base + 6]), tonumber(ARGV[base + 7])
  local token = ARGV[base + 8]
  local field = worker .. '|' .. key
  local held = tonumber(redis.call('HGET', lh, field) or '0')
  local before = held
  local granted = 0
  local cap = 0
  if kind == 's' then
    -- A soft budget is never leased: its spend is only counted.
    if spent > 0 then
      local total = redis.call('HINCRBY', key, 's', ARGV[base + 2])
      if token ~= '' then redis.call('ZADD', KEYS[index], int(total), token) end
    end
  elseif kind == 'h' then
    local leaving = math.min(spent + release, held)
    held = held - leaving
    if spent > 0 then
      local total = redis.call('HINCRBY', key, 's', ARGV[base + 2])
      if token ~= '' then redis.call('ZADD', KEYS[index], int(total), token) end
    end
    if leaving > 0 then
      redis.call('HINCRBY', key, 'r', int(0 - leaving))
      if redis.call('HINCRBY', key, 'l', int(0 - leaving)) <= 0 then redis.call('HDEL', key, 'l', 'q') end
    end
    cap = 0
    local c = redis.call('HMGET', key, 's', 'r', 'q')
    local squeezed = c[3] and tonumber(c[3]) >= now  -- a call waits for leased room (reserve_call.lua)
    if seeded and fraction > 0 and not squeezed then
      local room = limit - (tonumber(c[1]) or 0) - (tonumber(c[2]) or 0)
      -- Each worker may hold a fraction of what remains, shared among the workers flushing now: near the
      -- cap the grants shrink below the minimum and every call goes through reserve_call.lua.
      cap = math.max(0, math.floor(room * fraction / active))
    end
    if want > 0 then
      granted = math.min(want, cap)
      if granted < min_grant or granted <= 0 then granted = 0 end
      if granted > 0 then
        held = held + granted
        redis.call('HINCRBY', key, 'r', int(granted))
        redis.call('HINCRBY', key, 'l', int(granted))
      end
    end
  else  -- 'p': requests of the plan's monthly limit
    local used = math.min(spent, held)  -- used requests stay counted: they were calls
    local back = math.min(release, held - used)
    held = held - used - back
    if back > 0 then redis.call('DECRBY', key, int(back)) end
    cap = 0
    if seeded and fraction > 0 then
      local room = limit - tonumber(redis.call('GET', key) or '0')
      cap = math.max(0, math.floor(room * fraction / active))
    end
    if want > 0 then
      granted = math.min(want, cap)
      if granted < min_grant or granted <= 0 then granted = 0 end
      if granted > 0 then
        held = held + granted
        redis.call('INCRBY', key, int(granted))
      end
    end
  end
  if expiry > 0 and (kind ~= 's' or spent > 0 or granted > 0) and redis.call('EXISTS', key) == 1 then
    redis.call('EXPIREAT', key, expiry)
    if token ~= '' then redis.call('EXPIREAT', KEYS[index], expiry) end
  end
  if kind ~= 's' then
    if held > 0 then
      redis.call('HSET', lh, field, int(held))
      redis.call('ZADD', lz, now + ttl, field)
    elseif before > 0 then
      redis.call('HDEL', lh, field)
      redis.call('ZREM', lz, field)
    end
  end
  out[i] = {before, held, granted, cap}
  if token ~= '' then index = index + 1 end
end
for j = 1, m do
  redis.call('XADD', KEYS[4], '*', 'e', ARGV[FIRST_ARG + n * PER + j - 1])
end
return {'ok', seeded and 1 or 0, out}
