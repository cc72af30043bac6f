--[[ settle_call: replace a call's reservation with its actual cost, and queue its usage event.

KEYS[1] reservations hash      KEYS[2] reservation deadlines zset
KEYS[3] key's tokens-per-minute log zset   KEYS[4] its running sum   KEYS[5] key's in-flight zset
KEYS[6] the account's usage event stream
KEYS[7] this call's settled marker (mode "once" only)
KEYS[8…7+n] budget counters (the same ones the reservation named)
KEYS[8+n…] the value indexes of the '*' budgets among them (zsets: value token -> settled), in counter order
ARGV[1] rid   ARGV[2] actual cost (nano-dollars)   ARGV[3] actual tokens
ARGV[4] usage event (JSON; "" = none, it travels on its own)
ARGV[5] mode:
  ""       the call's own settle. If the reservation already expired (its process was presumed dead),
           its amount was given back then, so only the actual cost is added now.
  "replay" a retry of a settle whose first attempt may or may not have run: applied only while the
           reservation is still held, so it never counts twice.
  "once"   a call admitted while Redis was unreachable, which reserved nothing: its cost is added
           once, however often this is retried.
ARGV[6] number of counters n
ARGV[7…] per counter: expiry (unix s, 0 = never), its value token in its index ("" = not a '*' counter)
The stream is not capped: the ingest worker deletes what it has written, and an event must never be
trimmed away while the database is down.
Returns the settled total of each counter, in KEYS order, so the caller can check alert thresholds.
A '*' counter's index scores its token with the counter's settled total, so readers find the biggest
spenders (or those in a range of spend) without scanning; it expires with its counters.
]]
local FIRST_COUNTER = 8
local rid = ARGV[1]
local tokens = tonumber(ARGV[3])
local mode = ARGV[5]
local rec = redis.call('HGET', KEYS[1], rid)
local apply = true
if mode == 'replay' then
  apply = rec ~= false
elseif mode == 'once' then
  apply = redis.call('SET', KEYS[7], '1', 'NX', 'PX', 86400000) ~= false
end

local amount, reserved_tokens = 0, nil
if rec then
  local a, tk = string.match(rec, '^(%-?%d+)|(%d+)')
  amount, reserved_tokens = tonumber(a), tk
  redis.call('HDEL', KEYS[1], rid)
  redis.call('ZREM', KEYS[2], rid)
end

if reserved_tokens and tonumber(reserved_tokens) ~= tokens then
  local member = rid .. ':' .. reserved_tokens
  local score = redis.call('ZSCORE', KEYS[3], member)
  if score then
    redis.call('ZREM', KEYS[3], member)
    -- As the caller spelt it: tostring() of a Lua number switches to exponent notation from 10^14.
    redis.call('ZADD', KEYS[3], score, rid .. ':' .. ARGV[3])
    redis.call('INCRBY', KEYS[4], tokens - tonumber(reserved_tokens))
  end
end
redis.call('ZREM', KEYS[5], rid)

local n = tonumber(ARGV[6])
local settled = {}
local index = FIRST_COUNTER + n
for c = 1, n do
  local key = KEYS[FIRST_COUNTER + c - 1]
  local expiry = tonumber(ARGV[7 + (c - 1) * 2])
  local token = ARGV[8 + (c - 1) * 2]
  if rec then redis.call('HINCRBY', key, 'r', 0 - amount) end  -- 0 - x, not -x: Redis refuses "-0" (a zero estimate)
  if apply then
    local total = redis.call('HINCRBY', key, 's', ARGV[2])
    settled[#settled + 1] = total
    if expiry > 0 then redis.call('EXPIREAT', key, expiry) end
    if token ~= '' then
      redis.call('ZADD', KEYS[index], string.format('%.0f', total), token)  -- never 1e+14
      if expiry > 0 then redis.call('EXPIREAT', KEYS[index], expiry) end
    end
  else
    settled[#settled + 1] = tonumber(redis.call('HGET', key, 's') or '0')
  end
  if token ~= '' then index = index + 1 end
end
if ARGV[4] ~= '' then redis.call('XADD', KEYS[6], '*', 'e', ARGV[4]) end
return settled
