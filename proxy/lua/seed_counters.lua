--[[ seed_counters: raise an account's counters to at least what its usage records add up to, and
mark its budget layout seeded. Never lowers a counter: a live one also holds calls whose events are
not in the database yet. Atomic, so a settle running at the same moment is never lost.

KEYS[1] the account's seeded set       KEYS[2] plan request counter of this month
KEYS[3…] budget counters (hashes; only the settled field s is touched)
ARGV[1] budget layout fingerprints to mark seeded, comma-separated ("" = none)
ARGV[2] plan requests recorded this month ("" = leave the plan counter alone)
ARGV[3] plan counter expiry (unix s)
ARGV[4…] per counter: settled nano-dollars from the records, expiry (unix s, 0 = never)
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

local settled = {}
for i = 3, #KEYS do
  local base = 4 + (i - 3) * 2
  local missing = raise(redis.call('HGET', KEYS[i], 's'), tonumber(ARGV[base]))
  if missing > 0 then
    settled[#settled + 1] = redis.call('HINCRBY', KEYS[i], 's', missing)
  else
    settled[#settled + 1] = tonumber(redis.call('HGET', KEYS[i], 's') or '0')
  end
  local expiry = tonumber(ARGV[base + 1])
  if expiry > 0 and redis.call('EXISTS', KEYS[i]) == 1 then redis.call('EXPIREAT', KEYS[i], expiry) end
end

if ARGV[1] ~= '' then
  -- Old layouts are kept so a proxy that has not seen a change yet does not re-seed in a loop.
  if redis.call('SCARD', KEYS[1]) >= MAX_FINGERPRINTS then redis.call('DEL', KEYS[1]) end
  for fingerprint in string.gmatch(ARGV[1], '[^,]+') do redis.call('SADD', KEYS[1], fingerprint) end
end
return settled
