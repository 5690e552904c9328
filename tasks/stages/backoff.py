"""Retry and poll delays: pure functions, declared once, capped below the visibility timeout."""

from __future__ import annotations

import random

from config import Settings
from config.timing import max_countdown_s

__all__ = ["poll_delay", "retry_countdown", "retry_delay"]


def retry_delay(
    retries: int, base_s: float, cap_s: float, rng: random.Random | None = None
) -> float:
    """Exponential backoff with "equal jitter": half of the step is fixed, half random, so
    retries spread out but never fire immediately. `retries` counts earlier retries (0 first)."""
    step = min(cap_s, base_s * (2.0 ** min(retries, 30)))
    return step / 2 + (rng or random).uniform(0, step / 2)


def retry_countdown(settings: Settings, retries: int, retry_after_s: float | None = None) -> float:
    """The countdown of the next retry of a task, honouring a Retry-After the API sent."""
    cap = min(settings.retry_max_delay_s, max_countdown_s(settings))
    delay = retry_delay(retries, settings.retry_base_delay_s, cap)
    if retry_after_s:
        delay = max(delay, min(retry_after_s, cap))
    return delay


def poll_delay(polls: int, interval_s: float, max_interval_s: float) -> float:
    """How long to wait before polling a task again after `polls` answers that it is pending:
    the interval, doubled each time, up to the maximum."""
    return min(max_interval_s, interval_s * (2.0 ** min(max(polls - 1, 0), 30)))
