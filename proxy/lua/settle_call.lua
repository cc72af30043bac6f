--[[ settle_call: replace a call's reservation with its actual cost, and queue its usage event.

KEYS[1] reservations hash      KEYS[2] reservation deadlines zset
KEYS[3] key's tokens-per-minute log zset   KEYS[4] its running sum   KEYS[5] key's in-flight zset
KEYS[6] the account's usage event stream
KEYS[7…] budget counters (the same ones the reservation named)
ARGV[1] rid   ARGV[2] actual cost (nano-dollars)   ARGV[3] actual tokens
ARGV[4] usage event (JSON)   ARGV[5…] per counter: expiry (unix s, 0 = never)
The stream is not capped: the ingest worker deletes what it has written, and an event must never be
trimmed away while the database is down.
Returns the settled total of each counter, in KEYS order, so the caller can check alert thresholds.
If the reservation already expired (its process was presumed dead), its amount was given back
then, so only the actual cost is added now.
]]
local rid = ARGV[1]
local actual = tonumber(ARGV[2])
local tokens = tonumber(ARGV[3])
local rec = redis.call('HGET', KEYS[1], rid)
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
    redis.call('ZADD', KEYS[3], score, rid .. ':' .. tokens)
    redis.call('INCRBY', KEYS[4], tokens - tonumber(reserved_tokens))
  end
end
redis.call('ZREM', KEYS[5], rid)

local settled = {}
for i = 7, #KEYS do
  if rec then redis.call('HINCRBY', KEYS[i], 'r', -amount) end
  settled[#settled + 1] = redis.call('HINCRBY', KEYS[i], 's', actual)
  local expiry = tonumber(ARGV[4 + i - 6])
  if expiry > 0 then redis.call('EXPIREAT', KEYS[i], expiry) end
end
redis.call('XADD', KEYS[6], '*', 'e', ARGV[4])
return settled
