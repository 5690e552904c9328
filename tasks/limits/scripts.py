"""The limiter's Lua scripts: every decision is one script, so every process on every machine
sees one consistent state (the state hash of a PublicKey, its in-flight set, its lateness list).

The state hash holds `tat` (GCRA's theoretical arrival time), `factor` and `throttled_at` (the
share of the rate after throttles, recovering linearly), `headroom` (the measured headroom, absent
until enough lateness samples) and `late_count`.
"""

from __future__ import annotations

__all__ = ["ACQUIRE", "MIN_FACTOR", "RECORD_LATENESS", "RESERVE", "THROTTLED"]

MIN_FACTOR = 0.05  # the rate never drops below 5% of the configured one

_COMMON = """
local function clock()
  local t = redis.call('TIME')
  return tonumber(t[1]) + tonumber(t[2]) / 1000000
end
local function factor(f0, t0, now, recovery)
  f0 = tonumber(f0)
  t0 = tonumber(t0)
  if not f0 or not t0 then return 1.0 end
  return math.min(1.0, f0 + (1.0 - f0) * (now - t0) / recovery)
end
-- ARGV from `first`: spaced limit (L - burst + 1), burst, max_wait, recovery, start headroom.
-- Returns granted (1/0), delay or retry_in, and the new tat (nil when refused).
local function token(key, now, first)
  local st = redis.call('HMGET', key, 'tat', 'factor', 'throttled_at', 'headroom')
  local headroom = tonumber(st[4]) or tonumber(ARGV[first + 4])
  local rate = tonumber(ARGV[first]) * (1.0 - headroom)
               * factor(st[2], st[3], now, tonumber(ARGV[first + 3]))
  local T = 1.0 / rate
  local tat = math.max(tonumber(st[1]) or now, now)
  local start = math.max(now, tat - (tonumber(ARGV[first + 1]) - 1) * T)
  local delay = start - now
  if delay > tonumber(ARGV[first + 2]) then return 0, delay - tonumber(ARGV[first + 2]), nil end
  return 1, delay, tat + T
end
local function fmt(x) return string.format('%.6f', x) end
"""

# KEYS: state hash. ARGV: spaced limit, burst, max_wait, recovery, start headroom, take (1/0).
# Returns {granted, delay or retry_in, Redis time now}.
RESERVE = _COMMON + """
local now = clock()
local granted, value, tat = token(KEYS[1], now, 1)
if granted == 1 and ARGV[6] == '1' then redis.call('HSET', KEYS[1], 'tat', fmt(tat)) end
return {granted, fmt(value), fmt(now)}
"""

# A free in-flight slot and a fresh token, as one decision: a caller never holds a token while
# it waits for a slot, so slots freeing at once cannot release callers whose starts have passed.
# KEYS: state hash, in-flight set. ARGV: spaced limit, burst, max_wait, recovery, start headroom,
# cap, lease id, lease ttl. Returns {1, delay, now} (slot and token taken), {0, retry_in, now}
# (no token soon enough: nothing taken) or {2, 0, now} (no free slot: nothing taken).
ACQUIRE = _COMMON + """
local now = clock()
redis.call('ZREMRANGEBYSCORE', KEYS[2], '-inf', now)
if redis.call('ZCARD', KEYS[2]) >= tonumber(ARGV[6]) then return {2, '0', fmt(now)} end
local granted, value, tat = token(KEYS[1], now, 1)
if granted == 1 then
  redis.call('HSET', KEYS[1], 'tat', fmt(tat))
  redis.call('ZADD', KEYS[2], now + value + tonumber(ARGV[8]), ARGV[7])
end
return {granted, fmt(value), fmt(now)}
"""

# KEYS: state hash. ARGV: limit, backoff factor, recovery, retry_after (0 = none).
# Every throttle answer lowers the rate by the factor (so many answers lower it more than one);
# the rate then climbs back linearly. Returns the new rate factor.
THROTTLED = _COMMON + """
local now = clock()
local st = redis.call('HMGET', KEYS[1], 'tat', 'factor', 'throttled_at')
local f = factor(st[2], st[3], now, tonumber(ARGV[3]))
local nf = math.max(""" + str(MIN_FACTOR) + """, f * tonumber(ARGV[2]))
local pause = math.max(tonumber(ARGV[4]), 1.0 / (tonumber(ARGV[1]) * nf))
local tat = math.max(tonumber(st[1]) or now, now + pause)
redis.call('HSET', KEYS[1], 'factor', fmt(nf), 'throttled_at', fmt(now), 'tat', fmt(tat))
return string.format('%.4f', nf)
"""

# KEYS: lateness list, state hash. ARGV: lateness (s), samples kept, recompute every N,
# samples needed, margin, floor, ceiling. Keeps the newest samples; every N samples the headroom
# becomes margin x their p99 (as a share of a one-second window), within [floor, ceiling].
# Returns the headroom in force.
RECORD_LATENESS = """
redis.call('LPUSH', KEYS[1], ARGV[1])
redis.call('LTRIM', KEYS[1], 0, tonumber(ARGV[2]) - 1)
local n = redis.call('HINCRBY', KEYS[2], 'late_count', 1)
if n % tonumber(ARGV[3]) ~= 0 then return redis.call('HGET', KEYS[2], 'headroom') or '' end
local raw = redis.call('LRANGE', KEYS[1], 0, -1)
if #raw < tonumber(ARGV[4]) then return '' end
local xs = {}
for i, v in ipairs(raw) do xs[i] = tonumber(v) end
table.sort(xs)
local p99 = xs[math.max(1, math.ceil(0.99 * #xs))]
local h = math.min(tonumber(ARGV[7]), math.max(tonumber(ARGV[6]), tonumber(ARGV[5]) * p99))
redis.call('HSET', KEYS[2], 'headroom', string.format('%.6f', h))
return string.format('%.6f', h)
"""
