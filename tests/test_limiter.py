"""The global limiter on a real Redis: spacing, burst, waiting without a token, shared state,
adapting to throttles, and the cap on calls in flight."""

from __future__ import annotations

import itertools
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import pytest
import redis

from config import Settings
from tasks.limits.limiter import Limiter, TokenWait


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


def test_concurrent_callers_in_many_threads_never_share_a_slot(redis_url: str) -> None:
    limiter = make(redis_url, rate_limit=50)
    with ThreadPoolExecutor(8) as pool:
        delays = list(pool.map(lambda _: limiter.reserve(max_wait_s=60), range(100)))
    # 100 tokens at 50/s (less headroom) reach about 2 s ahead: none was lost or doubled.
    assert max(delays) == pytest.approx(99 / limiter.rate, abs=0.15)
    other = make(redis_url, rate_limit=50)  # another process's limiter sees the same state
    assert other.reserve(max_wait_s=60) == pytest.approx(100 / limiter.rate, abs=0.15)


def test_a_throttle_lowers_the_rate_for_everyone_once_per_burst_and_it_recovers(
        redis_url: str) -> None:
    limiter = make(redis_url, rate_limit=10, throttle_backoff_factor=0.5,
                   throttle_recovery_s=0.5)
    assert limiter.rate_factor() == 1.0
    assert limiter.throttled() == pytest.approx(0.5)
    assert limiter.throttled() == pytest.approx(0.5, abs=0.02)  # same burst: no second cut
    assert make(redis_url, rate_limit=10).rate_factor() < 0.6
    time.sleep(0.6)
    assert limiter.rate_factor() == 1.0


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
