"""The retry policy, declared once: counting retries with backoff, requeueing or re-publishing
without counting (waiting is not failing), and the options every task shares."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any, NoReturn

from celery import Task
from celery.exceptions import Reject, Retry
from redis import RedisError

from config import Settings, get_settings
from config.timing import max_countdown_s
from picpik.errors import RetryableError
from tasks.stages.backoff import retry_countdown

__all__ = ["REQUEUE_PAUSE_S", "TASK_OPTIONS", "republish", "requeue", "retry_or_give_up"]

# Longest in-task pause before a message waiting for a token goes to the back of its queue.
REQUEUE_PAUSE_S = 0.25

# Redis hiccups retry with Celery's own backoff (capped below the visibility timeout too);
# our errors are handled by the functions below.
TASK_OPTIONS: dict[str, Any] = {
    "bind": True,
    "acks_late": True,
    "autoretry_for": (RedisError,),
    "retry_backoff": True,
    "retry_backoff_max": int(min(60.0, max_countdown_s(get_settings()))),
    "retry_jitter": True,
    "max_retries": 8,
}


def republish(task: Task, settings: Settings, countdown_s: float, why: str) -> NoReturn:
    """Send this very message again in countdown_s, keeping its retry count (and its chain)."""
    countdown = min(max(countdown_s, 0.01), max_countdown_s(settings))
    task.signature_from_request(countdown=countdown).apply_async()
    raise Retry(f"{why}; again in {countdown:.2f} s (not counted as a retry)", when=countdown)


def requeue(retry_in_s: float, why: str) -> NoReturn:
    """Put this message back at the end of its queue after a short pause, keeping its retry
    count: no countdown, so a long wait never piles messages up in a worker's memory (ETA
    messages are held there) and the process is soon free for the other queues."""
    time.sleep(min(max(retry_in_s, 0.0), REQUEUE_PAUSE_S))
    raise Reject(why, requeue=True)


def retry_or_give_up(task: Task, settings: Settings, exc: RetryableError,
                     give_up: Callable[[RetryableError, int], None]) -> None:
    """Retry with exponential backoff and jitter, or, past max_retries, call give_up."""
    retries = task.request.retries
    if retries >= settings.max_retries:
        give_up(exc, retries)
        return
    countdown = retry_countdown(settings, retries, getattr(exc, "retry_after_s", None))
    raise task.retry(countdown=countdown, max_retries=None, exc=exc)
