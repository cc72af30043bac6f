--[[ settle_call: replace a call's reservation with its actual cost, and queue its usage event.

KEYS[1] reservations hash      KEYS[2] reservation deadlines zset
KEYS[3] key's tokens-per-minute log zset   KEYS[4] its running sum   KEYS[5] key's in-flight zset
KEYS[6] the account's usage event stream
KEYS[7] this call's settled marker (mode "once" only)
KEYS[8…] budget counters (the same ones the reservation named)
ARGV[1] rid   ARGV[2] actual cost (nano-dollars)   ARGV[3] actual tokens
ARGV[4] usage event (JSON; "" = none, it travels on its own)
ARGV[5] mode:
  ""       the call's own settle. If the reservation already expired (its process was presumed dead),
           its amount was given back then, so only the actual cost is added now.
  "replay" a retry of a settle whose first attempt may or may not have run: applied only while the
           reservation is still held, so it never counts twice.
  "once"   a call admitted while Redis was unreachable, which reserved nothing: its cost is added
           once, however often this is retried.
ARGV[6…] per counter: expiry (unix s, 0 = never)
The stream is not capped: the ingest worker deletes what it has written, and an event must never be
trimmed away while the database is down.
Returns the settled total of each counter, in KEYS order, so the caller can check alert thresholds.
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

local settled = {}
for i = FIRST_COUNTER, #KEYS do
  if rec then redis.call('HINCRBY', KEYS[i], 'r', 0 - amount) end  -- 0 - x, not -x: Redis refuses "-0" (a zero estimate)
  if apply then
    settled[#settled + 1] = redis.call('HINCRBY', KEYS[i], 's', ARGV[2])
    local expiry = tonumber(ARGV[6 + i - FIRST_COUNTER])
    if expiry > 0 then redis.call('EXPIREAT', KEYS[i], expiry) end
  else
    settled[#settled + 1] = tonumber(redis.call('HGET', KEYS[i], 's') or '0')
  end
end
if ARGV[4] ~= '' then redis.call('XADD', KEYS[6], '*', 'e', ARGV[4]) end
return settled
