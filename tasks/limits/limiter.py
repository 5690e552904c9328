"""The global rate limiter: one Lua script per decision, in Redis, shared by every process.

GCRA with reservations: a caller that may wait up to `max_wait_s` is given its exact start
time (so callers never race for the same token), one that would wait longer gets no token
and is told when to come back (its message goes back to its queue without burning a retry).
Every API call takes a token (submits and polls). A cap on calls in flight sits beside it.
When the API throttles anyway, the rate drops for everyone by `throttle_backoff_factor` and
climbs back linearly over `throttle_recovery_s`.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager

import redis

from config import Settings
from picpik.errors import RetryableError
from tasks.store.ledger import redis_now

__all__ = ["Limiter", "TokenWait", "call_lease_s"]

MIN_FACTOR = 0.05  # the rate never drops below 5% of the configured one
IN_FLIGHT_LEASE_S = 60.0  # the shortest an in-flight slot is held before it frees itself

_FACTOR = """
local function factor(st, now, recovery)
  local f0 = tonumber(st[2])
  local t0 = tonumber(st[3])
  if not f0 or not t0 then return 1.0 end
  return math.min(1.0, f0 + (1.0 - f0) * (now - t0) / recovery)
end
local function clock()
  local t = redis.call('TIME')
  return tonumber(t[1]) + tonumber(t[2]) / 1000000
end
"""

# KEYS: state hash. ARGV: rate, burst, max_wait, recovery, take (1) or only look (0).
# Returns {granted, delay or retry_in, Redis time now}.
_RESERVE = _FACTOR + """
local now = clock()
local st = redis.call('HMGET', KEYS[1], 'tat', 'factor', 'throttled_at')
local rate = tonumber(ARGV[1]) * factor(st, now, tonumber(ARGV[4]))
local T = 1.0 / rate
local tat = math.max(tonumber(st[1]) or now, now)
local start = math.max(now, tat - (tonumber(ARGV[2]) - 1) * T)
local delay = start - now
local stamp = string.format('%.6f', now)
if delay > tonumber(ARGV[3]) then
  return {0, string.format('%.6f', delay - tonumber(ARGV[3])), stamp}
end
if ARGV[5] == '0' then return {1, string.format('%.6f', delay), stamp} end
redis.call('HSET', KEYS[1], 'tat', string.format('%.6f', tat + T))
return {1, string.format('%.6f', delay), stamp}
"""

# KEYS: state hash. ARGV: rate, backoff factor, recovery, retry_after (0 = none).
# Returns the new rate factor.
_THROTTLED = _FACTOR + """
local now = clock()
local st = redis.call('HMGET', KEYS[1], 'tat', 'factor', 'throttled_at')
local f = factor(st, now, tonumber(ARGV[3]))
local t0 = tonumber(st[3])
-- One burst of throttled answers is one signal: lower the rate at most once a second.
if t0 and now - t0 < 1.0 then return string.format('%.4f', f) end
local nf = math.max(""" + str(MIN_FACTOR) + """, f * tonumber(ARGV[2]))
local pause = math.max(tonumber(ARGV[4]), 1.0 / (tonumber(ARGV[1]) * nf))
local tat = math.max(tonumber(st[1]) or now, now + pause)
redis.call('HSET', KEYS[1], 'factor', string.format('%.6f', nf),
           'throttled_at', string.format('%.6f', now), 'tat', string.format('%.6f', tat))
return string.format('%.4f', nf)
"""

# KEYS: in-flight sorted set. ARGV: cap, lease id, lease ttl. Returns 1 when a slot was taken.
_SLOT = """
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1000000
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now)
if redis.call('ZCARD', KEYS[1]) >= tonumber(ARGV[1]) then return 0 end
redis.call('ZADD', KEYS[1], now + tonumber(ARGV[3]), ARGV[2])
return 1
"""


def call_lease_s(settings: Settings) -> float:
    """How long one API call may hold what it took (an in-flight slot, a poll claim): longer
    than its connect and read timeouts, so a slow call never loses its slot while open."""
    return settings.connect_timeout_s + settings.read_timeout_s + 10


class TokenWait(RetryableError):
    """No token within the wait this caller may spend; come back after `retry_in_s`.
    Not a failure: the message goes back to its queue without counting a retry."""

    code = "rate_limited"

    def __init__(self, retry_in_s: float) -> None:
        super().__init__(f"no API token for {retry_in_s:.2f} s")
        self.retry_in_s = retry_in_s


class Limiter:
    """The rate and in-flight limits of one PublicKey, shared through Redis."""

    def __init__(self, client: redis.Redis, settings: Settings) -> None:
        self.redis = client
        self.settings = settings
        key = settings.public_key or "default"
        self.state_key = f"cutout:limiter:{key}"
        self.inflight_key = f"cutout:limiter:{key}:inflight"
        self._reserve = client.register_script(_RESERVE)
        self._throttled = client.register_script(_THROTTLED)
        self._slot = client.register_script(_SLOT)
        self._clock = RedisClock()

    @property
    def rate(self) -> float:
        """The calls per second the limiter hands out when the API has not throttled."""
        return self.settings.rate_limit * (1.0 - self.settings.rate_headroom)

    def reserve(self, max_wait_s: float, *, take: bool = True) -> float:
        """Take a token that starts within max_wait_s; return the delay until it starts.
        Raises TokenWait (no token taken) when the next free start is further away.
        With take=False only look: would a token be free within max_wait_s now?"""
        return self._reserve_slot(max_wait_s, take)[0]

    def _reserve_slot(self, max_wait_s: float, take: bool) -> tuple[float, float]:
        """(delay as the script saw it, the start on this process's wall clock)."""
        args = [self.rate, self.settings.rate_burst, max_wait_s, self.settings.throttle_recovery_s,
                int(take)]
        sent = time.time()
        granted, delay, redis_now = self._reserve(keys=[self.state_key], args=args)
        self._clock.observe(sent, float(redis_now), time.time())
        if not int(granted):
            raise TokenWait(float(delay))
        return float(delay), self._clock.local(float(redis_now) + float(delay))

    def throttled(self, retry_after_s: float | None = None) -> float:
        """Tell every process the API throttled us; return the new rate factor. A Retry-After
        pauses everyone, but never longer than a retry may wait (one odd header must not stop
        the whole pipeline for hours)."""
        s = self.settings
        pause = min(retry_after_s or 0.0, s.retry_max_delay_s)
        args = [self.rate, s.throttle_backoff_factor, s.throttle_recovery_s, pause]
        return float(self._throttled(keys=[self.state_key], args=args))

    def rate_factor(self) -> float:
        """The share of the rate currently allowed (1.0 once recovered)."""
        f0, t0 = self.redis.hmget(self.state_key, ["factor", "throttled_at"])
        if f0 is None or t0 is None:
            return 1.0
        now = redis_now(self.redis)
        f = float(f0)
        return min(1.0, f + (1.0 - f) * (now - float(t0)) / self.settings.throttle_recovery_s)

    @contextmanager
    def call(self, max_wait_s: float, lease_s: float | None = None) -> Iterator[None]:
        """Wait for a token (at most max_wait_s, else TokenWait) and a free in-flight slot,
        then run the body: one API call. The slot is held for at most lease_s, which is also
        the longest wait for one (by default a minute, longer when the call may take longer)."""
        if lease_s is None:
            lease_s = max(IN_FLIGHT_LEASE_S, call_lease_s(self.settings))
        # The start is a time on Redis's clock, shared by every process: a process held up
        # after the answer still leaves at its start, not a moment later than its neighbours.
        _, start = self._reserve_slot(max_wait_s, take=True)
        time.sleep(max(0.0, start - time.time()))
        # Only calls actually open count as in flight: a slot held while sleeping for a start
        # would make the next caller miss its own start and bunch up with the one after.
        lease = uuid.uuid4().hex
        deadline = time.time() + lease_s
        while not self._slot(keys=[self.inflight_key],
                             args=[self.settings.max_in_flight, lease, lease_s]):
            if time.time() > deadline:
                raise TokenWait(0.5)
            time.sleep(0.005)  # calls in flight end within their timeout; this wait is short
        try:
            yield
        finally:
            self.redis.zrem(self.inflight_key, lease)


class RedisClock:
    """The offset between this process's wall clock and Redis's, from the round trips the
    limiter makes anyway (the one with the shortest round trip is the most exact; older
    observations age out so a stepped clock is followed)."""

    AGE_OUT_S = 60.0

    def __init__(self) -> None:
        self.offset_s = 0.0  # Redis time minus local time
        self._error_s = float("inf")
        self._seen_at = 0.0

    def observe(self, sent: float, redis_now: float, received: float) -> None:
        error = (received - sent) / 2
        if error <= self._error_s or received - self._seen_at > self.AGE_OUT_S:
            self.offset_s = redis_now - (sent + error)
            self._error_s, self._seen_at = error, received

    def local(self, redis_time: float) -> float:
        return redis_time - self.offset_s
