"""The global rate limiter: one Lua script per decision, in Redis, shared by every process.

GCRA with reservations: a caller that may wait up to `max_wait_s` is given its exact start
time (so callers never race for the same token), one that would wait longer gets no token
and is told when to come back (its message goes back to its queue without burning a retry).
Every API call takes a token (submits and polls), together with one of the in-flight slots in
the same script: a token is only ever taken by a caller that may leave at its start, so no call
leaves at another time (slots freeing at once release no burst).

Burst: `rate_burst` calls may leave together; the spacing after them is that of
L - (burst - 1) calls per second, so any one-second window still holds at most L calls.
Headroom: every call records how late it left against its start; the rate is L x (1 - h), h
just above the recent p99 of that lateness (within CUTOUT_RATE_HEADROOM_MIN/_MAX).
When the API throttles anyway, each throttle answer lowers the rate for everyone by
`throttle_backoff_factor`, and it climbs back linearly over `throttle_recovery_s`.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass

import redis
from redis.client import Pipeline

from config import Settings
from picpik.errors import RetryableError
from tasks.limits.scripts import ACQUIRE, RECORD_LATENESS, RESERVE, THROTTLED
from tasks.store.ledger import redis_now
from tasks.store.metrics import ApiCallCounter
from tasks.store.scripts import queue_script

__all__ = ["Grant", "Limiter", "TokenWait", "call_lease_s"]

IN_FLIGHT_LEASE_S = 60.0  # the shortest an in-flight slot is held before it frees itself
SLOT_RECHECK_S = 0.02  # how often a caller without a free in-flight slot looks again
LATENESS_KEPT = 500  # the recent samples the headroom follows
LATENESS_EVERY = 10  # the headroom is recomputed every this many samples
LATENESS_NEEDED = 50  # samples before the measured headroom replaces CUTOUT_RATE_HEADROOM
LATENESS_MARGIN = 1.25  # headroom = this x the p99 lateness (a share of a one-second window)
# A process whose last token started within CALM_DELAY_S takes the limiter for free for
# CALM_S after it: its `look` before a claim asks Redis nothing. A wrong guess costs one
# claim handed back, never a call out of turn: the token itself is still taken in Redis.
CALM_DELAY_S = 0.1
CALM_S = 1.0


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


@dataclass
class Grant:
    """One call's token: its start on Redis's clock (and on this process's, the latest local
    time the clock estimate allows, so a caller is never early) and how late it left."""

    start: float
    start_local: float = 0.0
    late_s: float | None = None  # None until the caller left
    slot: str = ""  # the in-flight slot's lease id ('' when none, or released)

    def leave(self, then: Callable[[], None] | None = None) -> None:
        """Sleep to the start, run `then` (a last write the request must wait for), then note
        how late this is: call it right before the request goes out (after any work the call
        needs, so that work is not lateness)."""
        if self.late_s is None:
            time.sleep(max(0.0, self.start_local - time.time()))
            if then is not None:
                then()
            self.late_s = max(0.0, time.time() - self.start_local)


class Limiter:
    """The rate and in-flight limits of one PublicKey, shared through Redis."""

    def __init__(self, client: redis.Redis, settings: Settings,
                 calls: ApiCallCounter | None = None) -> None:
        self.redis = client
        self.settings = settings
        self.calls = calls  # the API client's counter: its counts go with the slot's release
        key = settings.public_key or "default"
        self.state_key = f"cutout:limiter:{key}"
        self.inflight_key = f"cutout:limiter:{key}:inflight"
        self.lateness_key = f"cutout:limiter:{key}:lateness"
        self._reserve = client.register_script(RESERVE)
        self._acquire = client.register_script(ACQUIRE)
        self._throttled = client.register_script(THROTTLED)
        self._record = client.register_script(RECORD_LATENESS)
        self._clock = RedisClock()
        self._calm_until = 0.0  # monotonic time until which free_lately() holds

    @property
    def spaced_limit(self) -> float:
        """The calls per second after a burst: L - (burst - 1), so that a burst and the calls
        spaced after it never put more than L calls into one second."""
        return self.settings.rate_limit - (self.settings.rate_burst - 1)

    def headroom(self) -> float:
        """The share of the spaced limit left unused now: measured, or the starting value."""
        measured = self.redis.hget(self.state_key, "headroom")
        return float(measured) if measured else self.settings.rate_headroom

    @property
    def rate(self) -> float:
        """The calls per second the limiter hands out when the API has not throttled."""
        return self.spaced_limit * (1.0 - self.headroom())

    def _token_args(self, max_wait_s: float) -> list[float]:
        s = self.settings
        return [self.spaced_limit, s.rate_burst, max_wait_s, s.throttle_recovery_s,
                s.rate_headroom]

    def reserve(self, max_wait_s: float, *, take: bool = True) -> float:
        """Take a token that starts within max_wait_s (no in-flight slot); return the delay
        until it starts. Raises TokenWait (no token taken) when the next free start is further
        away. With take=False only look: would a token be free within max_wait_s now?"""
        delay, _ = self._token(max_wait_s, take)
        return delay

    def token(self, max_wait_s: float) -> Grant:
        """Take a token (no in-flight slot) and return it with its start on Redis's clock."""
        delay, now = self._token(max_wait_s, True)
        return Grant(start=now + delay, start_local=self._clock.local(now + delay))

    def _token(self, max_wait_s: float, take: bool) -> tuple[float, float]:
        sent = time.time()
        granted, delay, now = self._reserve(keys=[self.state_key],
                                            args=[*self._token_args(max_wait_s), int(take)])
        self._clock.observe(sent, float(now), time.time())
        self._note(float(delay) if int(granted) else None)
        if not int(granted):
            raise TokenWait(float(delay))
        return float(delay), float(now)

    def look(self, max_wait_s: float) -> None:
        """Raise TokenWait (taking nothing) when no token would start within max_wait_s. A
        process whose last token came at once does not ask (free_lately)."""
        if not self.free_lately():
            self.reserve(max_wait_s, take=False)

    def free_lately(self) -> bool:
        """Whether this process's last token (or look) started at once, within CALM_S."""
        return time.monotonic() < self._calm_until

    def _note(self, delay_s: float | None) -> None:
        """Remember whether the limiter just gave a start at once (None: it gave none)."""
        calm = delay_s is not None and delay_s <= CALM_DELAY_S
        self._calm_until = time.monotonic() + CALM_S if calm else 0.0

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

    def record_lateness(self, late_s: float) -> float | None:
        """Add one call's lateness to the recent samples; return the headroom in force (None
        while too few samples were measured)."""
        headroom = self._record(keys=[self.lateness_key, self.state_key],
                                args=self._lateness_args(late_s))
        return float(headroom) if headroom else None

    def _lateness_args(self, late_s: float) -> list[float | int]:
        s = self.settings
        return [round(max(0.0, late_s), 6), LATENESS_KEPT, LATENESS_EVERY, LATENESS_NEEDED,
                LATENESS_MARGIN, s.rate_headroom_min, s.rate_headroom_max]

    @contextmanager
    def call(self, max_wait_s: float, lease_s: float | None = None, *,
             leave: bool = True) -> Iterator[Grant]:
        """Take an in-flight slot and a token starting within max_wait_s (else TokenWait),
        then run the body: one API call. With leave=True the body runs at the token's start;
        with leave=False it runs at once and must call `grant.leave()` right before its
        request goes out (the API client's `before_send`), so that the work it does first
        (durable writes, signing) happens while it waits instead of making it late. The slot
        is held for at most lease_s, which is also the longest wait for one (by default a
        minute, longer when the call may take longer)."""
        if lease_s is None:
            lease_s = max(IN_FLIGHT_LEASE_S, call_lease_s(self.settings))
        lease = uuid.uuid4().hex
        grant = self._acquire_slot_and_token(max_wait_s, lease, lease_s)
        grant.slot = lease
        with self.calls.deferred() if self.calls else nullcontext():
            try:
                if leave:
                    grant.leave()
                yield grant
            finally:
                if grant.slot:
                    pipe = self.redis.pipeline(transaction=False)
                    self.release_into(grant, pipe)
                    pipe.execute()

    def release_into(self, grant: Grant, pipe: Pipeline) -> None:
        """Queue the end of the grant's call on `pipe`: its lateness sample and its in-flight
        slot freed. A caller with a write of its own right after the call (the TaskUID) sends
        both in one round trip; otherwise `call()` sends it when its body ends."""
        if grant.late_s is not None:
            queue_script(pipe, self._record, [self.lateness_key, self.state_key],
                         self._lateness_args(grant.late_s))
        pipe.zrem(self.inflight_key, grant.slot)
        if self.calls:
            self.calls.queue_into(pipe)
        grant.slot = ""

    def _acquire_slot_and_token(self, max_wait_s: float, lease: str, lease_s: float) -> Grant:
        args: list[float | str] = [*self._token_args(max_wait_s), self.settings.max_in_flight,
                                   lease, lease_s]
        deadline = time.monotonic() + lease_s
        while True:
            sent = time.time()
            status, value, now = self._acquire(keys=[self.state_key, self.inflight_key],
                                               args=args)
            self._clock.observe(sent, float(now), time.time())
            self._note(float(value) if int(status) == 1 else None)
            if int(status) == 1:
                # A time on Redis's clock, shared by every process: a process held up after
                # the answer still leaves at its start, not a moment later than its neighbours.
                start = float(now) + float(value)
                return Grant(start=start, start_local=self._clock.local(start))
            if int(status) == 0:
                raise TokenWait(float(value))
            # No free slot: nothing was taken. Calls in flight end within their timeout.
            if time.monotonic() > deadline:
                raise TokenWait(0.5)
            time.sleep(SLOT_RECHECK_S)


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
        """The local time at which Redis's clock surely reads redis_time or later: the offset's
        uncertainty (half the round trip it was measured with) is added, so a caller sleeping
        until then is never early, only late by at most that much (which it then measures)."""
        return redis_time - self.offset_s + self._error_s
