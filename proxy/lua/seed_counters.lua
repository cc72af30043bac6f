--[[ seed_counters: raise an account's counters to at least what its usage records add up to, and
mark its budget layout seeded. Never lowers a counter: a live one also holds calls whose events are
not in the database yet. Atomic, so a settle running at the same moment is never lost.

KEYS[1] the account's seeded set       KEYS[2] plan request counter of this month
KEYS[3…2+n] budget counters (hashes; only the settled field s is touched)
KEYS[3+n…] the value indexes of the '*' budgets among them (zsets: value token -> settled), in counter order
ARGV[1] budget layout fingerprints to mark seeded, comma-separated ("" = none)
ARGV[2] plan requests recorded this month ("" = leave the plan counter alone)
ARGV[3] plan counter expiry (unix s)
ARGV[4] number of counters n
ARGV[5…] per counter: settled nano-dollars from the records, expiry (unix s, 0 = never), its value token
         in its index ("" = not a '*' counter)
Returns the settled value of each counter afterwards, in KEYS order.
]]
local MAX_FINGERPRINTS = 64

local function raise(current, floor)
  local now = tonumber(current or '0')
  if floor > now then return floor - now end
  return 0
end

if ARGV[2] ~= '' then
  local missing = raise(redis.call('GET', KEYS[2]), tonumber(ARGV[2]))
  if missing > 0 then redis.call('INCRBY', KEYS[2], missing) end
  if redis.call('EXISTS', KEYS[2]) == 1 then redis.call('EXPIREAT', KEYS[2], ARGV[3]) end
end

local n = tonumber(ARGV[4])
local settled = {}
local index = 3 + n
for c = 1, n do
  local key = KEYS[2 + c]
  local base = 5 + (c - 1) * 3
  local missing = raise(redis.call('HGET', key, 's'), tonumber(ARGV[base]))
  local total
  if missing > 0 then
    total = redis.call('HINCRBY', key, 's', missing)
  else
    total = tonumber(redis.call('HGET', key, 's') or '0')
  end
  settled[#settled + 1] = total
  local expiry = tonumber(ARGV[base + 1])
  local token = ARGV[base + 2]
  if redis.call('EXISTS', key) == 1 then
    if expiry > 0 then redis.call('EXPIREAT', key, expiry) end
    -- Also the counters a settle made before there was an index: listing them is what re-seeding is for.
    if token ~= '' then
      redis.call('ZADD', KEYS[index], string.format('%.0f', total), token)  -- never 1e+14
      if expiry > 0 then redis.call('EXPIREAT', KEYS[index], expiry) end
    end
  end
  if token ~= '' then index = index + 1 end
end

if ARGV[1] ~= '' then
  -- Old layouts are kept so a proxy that has not seen a change yet does not re-seed in a loop.
  if redis.call('SCARD', KEYS[1]) >= MAX_FINGERPRINTS then redis.call('DEL', KEYS[1]) end
  for fingerprint in string.gmatch(ARGV[1], '[^,]+') do redis.call('SADD', KEYS[1], fingerprint) end
end
return settled
