"""The global limiter on a real Redis: spacing, burst, waiting without a token, shared state,
adapting to throttles, and the cap on calls in flight."""

from __future__ import annotations

import bisect
import itertools
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import pytest
import redis
from pydantic import ValidationError

from config import Settings
from tasks.limits.limiter import Limiter, TokenWait
from tasks.store.ledger import redis_now


def make(redis_url: str, **kw: object) -> Limiter:
    settings = Settings(public_key="pk", **kw)  # type: ignore[arg-type]
    return Limiter(redis.Redis.from_url(redis_url, decode_responses=True), settings)


def test_tokens_are_spaced_by_the_rate_after_the_burst(redis_url: str) -> None:
    limiter = make(redis_url, rate_limit=20, rate_burst=3)
    delays = [limiter.reserve(max_wait_s=10) for _ in range(8)]
    interval = 1 / limiter.rate
    assert delays[:3] == pytest.approx([0, 0, 0], abs=0.01)
    gaps = [b - a for a, b in itertools.pairwise(delays[2:])]
    assert all(0.8 * interval < gap <= interval + 1e-6 for gap in gaps), gaps


def test_the_limiter_keeps_headroom_below_the_configured_rate(redis_url: str) -> None:
    limiter = make(redis_url, rate_limit=10)
    assert limiter.rate == pytest.approx(10 * (1 - limiter.settings.rate_headroom))
    assert limiter.rate < 10


def test_headroom_follows_the_measured_lateness_within_its_bounds(redis_url: str) -> None:
    limiter = make(redis_url, rate_limit=10, rate_headroom=0.07, rate_headroom_min=0.02,
                   rate_headroom_max=0.3)
    for _ in range(10):
        assert limiter.record_lateness(0.001) is None  # too few samples: the starting 7 %
    assert limiter.headroom() == 0.07
    for _ in range(100):
        limiter.record_lateness(0.001)
    assert limiter.headroom() == pytest.approx(0.02)  # a quiet machine: the floor
    assert limiter.rate == pytest.approx(10 * 0.98)
    for _ in range(50):
        limiter.record_lateness(0.08)  # a loaded one: just above its p99
    assert limiter.headroom() == pytest.approx(1.25 * 0.08)
    for _ in range(500):
        limiter.record_lateness(5.0)  # a stalled one: the ceiling
    assert limiter.headroom() == pytest.approx(0.3)
    for _ in range(500):
        limiter.record_lateness(0.0)  # the recent samples count, the old ones age out
    assert limiter.headroom() == pytest.approx(0.02)


def test_a_caller_that_would_wait_too_long_gets_no_token_and_a_time_to_come_back(
        redis_url: str) -> None:
    limiter = make(redis_url, rate_limit=2)
    assert limiter.reserve(max_wait_s=0.1) == 0
    with pytest.raises(TokenWait) as refused:
        limiter.reserve(max_wait_s=0.1)
    assert 0.2 < refused.value.retry_in_s <= 0.5
    # The refusal took nothing: the next patient caller gets the very next slot.
    assert limiter.reserve(max_wait_s=5) == pytest.approx(1 / limiter.rate, abs=0.05)


def test_looking_for_a_token_takes_none(redis_url: str) -> None:
    limiter = make(redis_url, rate_limit=2)
    for _ in range(3):
        assert limiter.reserve(max_wait_s=0.1, take=False) == 0
    assert limiter.reserve(max_wait_s=0.1) == 0
    with pytest.raises(TokenWait):
        limiter.reserve(max_wait_s=0.1, take=False)


def test_a_process_skips_its_look_only_while_its_last_token_came_at_once(redis_url: str) -> None:
    limiter = make(redis_url, rate_limit=2)
    assert not limiter.free_lately()  # nothing seen yet: look first
    assert limiter.reserve(max_wait_s=0.1) == 0
    assert limiter.free_lately()  # a token at once: the next claim need not look
    with pytest.raises(TokenWait):
        limiter.reserve(max_wait_s=0.1)  # booked up now
    assert not limiter.free_lately()  # told to wait: look again before the next claim


def test_concurrent_callers_in_many_threads_never_share_a_slot(redis_url: str) -> None:
    limiter = make(redis_url, rate_limit=50)
    with ThreadPoolExecutor(8) as pool:
        delays = list(pool.map(lambda _: limiter.reserve(max_wait_s=60), range(100)))
    # 100 tokens at 50/s (less headroom) reach about 2 s ahead: none was lost or doubled.
    assert max(delays) == pytest.approx(99 / limiter.rate, abs=0.15)
    other = make(redis_url, rate_limit=50)  # another process's limiter sees the same state
    assert other.reserve(max_wait_s=60) == pytest.approx(100 / limiter.rate, abs=0.15)


def test_each_throttle_answer_lowers_the_rate_for_everyone_in_proportion_and_it_recovers(
        redis_url: str) -> None:
    limiter = make(redis_url, rate_limit=10, throttle_backoff_factor=0.9,
                   throttle_recovery_s=0.5)
    assert limiter.rate_factor() == 1.0
    assert limiter.throttled() == pytest.approx(0.9)  # one answer: a small step, not half
    limiter.throttled()
    assert limiter.throttled() == pytest.approx(0.9 ** 3, abs=0.02)  # three: three steps
    assert make(redis_url, rate_limit=10).rate_factor() < 0.8  # every process sees it
    time.sleep(0.6)  # on Redis's clock the recovery is over; the factor is computed from it
    assert limiter.rate_factor() == 1.0


def test_after_a_throttle_every_caller_gets_tokens_further_apart_until_it_recovers(
        redis_url: str) -> None:
    limiter = make(redis_url, rate_limit=10, throttle_backoff_factor=0.5,
                   throttle_recovery_s=3600)
    other = make(redis_url, rate_limit=10)  # another process, same PublicKey
    before = [other.token(60).start for _ in range(5)]
    limiter.throttled()
    limiter.throttled()
    after = [other.token(60).start for _ in range(5)]
    gap_before = min(b - a for a, b in itertools.pairwise(before))
    gap_after = min(b - a for a, b in itertools.pairwise(after))
    # A quarter of the rate (two answers, factor 0.5, barely recovered): four times the gap.
    assert gap_after > 3.5 * gap_before
    limiter.redis.hset(limiter.state_key, "throttled_at", 0)  # the recovery long over
    later = [other.token(60).start for _ in range(5)]
    assert min(b - a for a, b in itertools.pairwise(later)) == pytest.approx(gap_before,
                                                                              rel=0.01)


def test_a_throttle_pushes_the_next_token_past_retry_after(redis_url: str) -> None:
    limiter = make(redis_url, rate_limit=100)
    limiter.throttled(retry_after_s=0.8)
    assert limiter.reserve(max_wait_s=5) >= 0.7


def test_a_huge_retry_after_pauses_everyone_no_longer_than_a_retry_may_wait(
        redis_url: str) -> None:
    limiter = make(redis_url, rate_limit=100, retry_max_delay_s=2)
    limiter.throttled(retry_after_s=1e9)
    with pytest.raises(TokenWait):
        limiter.reserve(max_wait_s=1)
    assert 1 <= limiter.reserve(max_wait_s=5) <= 2.1


def test_calls_in_flight_are_capped(redis_url: str) -> None:
    limiter = make(redis_url, rate_limit=1000, max_in_flight=2)
    release = threading.Event()
    entered: list[int] = []

    def hold(i: int) -> None:
        with limiter.call(max_wait_s=5, lease_s=10):
            entered.append(i)
            release.wait(10)

    threads = [threading.Thread(target=hold, args=(i,)) for i in range(3)]
    for t in threads:
        t.start()
    deadline = time.monotonic() + 5
    while len(entered) < 2 and time.monotonic() < deadline:
        time.sleep(0.01)
    time.sleep(0.2)
    assert len(entered) == 2
    assert limiter.redis.zcard(limiter.inflight_key) == 2
    release.set()
    for t in threads:
        t.join(10)
    assert len(entered) == 3 and limiter.redis.zcard(limiter.inflight_key) == 0


def test_an_in_flight_slot_lasts_longer_than_the_slowest_call_the_settings_allow(
        redis_url: str) -> None:
    limiter = make(redis_url, rate_limit=1000, connect_timeout_s=5, read_timeout_s=120)
    with limiter.call(max_wait_s=5):
        [(_, expires)] = limiter.redis.zrange(limiter.inflight_key, 0, -1, withscores=True)
        seconds, micros = limiter.redis.time()
        assert expires - (seconds + micros / 1e6) > 125


def _busiest_second(starts: list[float]) -> int:
    """The most starts in any half-open one-second window [t, t + 1) (as the API counts)."""
    starts = sorted(starts)
    return max(bisect.bisect_left(starts, s + 1.0) - i for i, s in enumerate(starts))


def test_slots_freeing_at_once_release_no_burst(redis_url: str) -> None:
    limiter = make(redis_url, rate_limit=10, max_in_flight=3)
    release = threading.Event()
    grants: list[tuple[float, float]] = []  # (start, Redis time when the body began)

    def call(_: int) -> None:
        with limiter.call(max_wait_s=5, lease_s=30) as grant:
            grants.append((grant.start, redis_now(limiter.redis)))
            release.wait(30)

    with ThreadPoolExecutor(12) as pool:
        futures = [pool.submit(call, i) for i in range(12)]
        deadline = time.monotonic() + 10
        while len(grants) < 3 and time.monotonic() < deadline:
            time.sleep(0.01)
        time.sleep(0.3)  # the nine others now wait for a slot
        released_at = redis_now(limiter.redis)
        assert len(grants) == 3
        release.set()  # three slots free at the same moment
        for future in futures:
            future.result(30)
    starts = sorted(start for start, _ in grants)
    # Every caller let in by the release got a fresh token after it, not one whose start had
    # long passed; and fresh tokens are spaced by the rate, so they cannot leave together.
    assert all(start >= released_at for start in starts[3:])
    interval = 1 / limiter.rate
    assert all(b - a >= interval * 0.999 for a, b in itertools.pairwise(starts))
    assert all(began >= start - 0.005 for start, began in grants), [(s, b - s) for s, b in grants]
    assert _busiest_second(starts) <= 10


@pytest.mark.parametrize("limit, burst", [(10, 5), (8, 4), (50, 20)])
def test_a_burst_setting_never_puts_more_than_l_tokens_into_one_second(
        redis_url: str, limit: int, burst: int) -> None:
    limiter = make(redis_url, rate_limit=limit, rate_burst=burst)
    with ThreadPoolExecutor(8) as pool:
        starts = list(pool.map(lambda _: limiter.token(max_wait_s=600).start,
                               range(4 * limit)))
    first = sorted(starts)[:burst]
    assert first[-1] - first[0] < (burst - 1) / limiter.rate  # the burst did come together
    assert _busiest_second(starts) <= limit


def test_burst_and_headroom_settings_that_could_break_the_limit_are_refused() -> None:
    with pytest.raises(ValidationError, match="rate_burst"):
        Settings(rate_limit=8, rate_burst=5)
    with pytest.raises(ValidationError, match="rate_headroom"):
        Settings(rate_headroom=0)
    with pytest.raises(ValidationError, match="rate_headroom"):
        Settings(rate_headroom=0.01, rate_headroom_min=0.02)
    assert Settings(rate_limit=8, rate_burst=4).rate_burst == 4


def test_a_caller_that_prepares_first_leaves_at_its_start_and_its_lateness_is_recorded(
        redis_url: str) -> None:
    limiter = make(redis_url, rate_limit=4)
    for _ in range(2):
        with limiter.call(max_wait_s=5, leave=False) as grant:
            assert grant.late_s is None  # the body runs at once, to prepare its request...
            grant.leave()  # ...and waits for the start right before sending it
            assert redis_now(limiter.redis) >= grant.start - 0.005
            assert grant.late_s is not None and grant.late_s >= 0
    assert limiter.redis.llen(limiter.lateness_key) == 2
    with limiter.call(max_wait_s=5, leave=False):
        pass  # never left (its request was not sent): no lateness to learn from
    assert limiter.redis.llen(limiter.lateness_key) == 2
    assert limiter.redis.zcard(limiter.inflight_key) == 0
