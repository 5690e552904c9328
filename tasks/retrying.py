"""The retry policy, declared once: counting retries with backoff, requeueing or re-publishing
without counting (waiting is not failing), and the options every task shares."""

from __future__ import annotations

import logging
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

__all__ = ["REQUEUE_PAUSE_S", "TASK_OPTIONS", "Waiting", "WaitingIsDebug", "republish", "requeue",
           "retry_or_give_up"]

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


class Waiting(Reject):
    """A message put back to wait (for an API token): normal flow, not a rejection."""


class WaitingIsDebug(logging.Filter):
    """Celery logs every Reject as a WARNING with a traceback; a message put back to wait for
    a token is the normal flow of a backlog (many a second), so its line becomes one DEBUG line
    without the traceback, and none at all unless DEBUG is on."""

    def filter(self, record: logging.LogRecord) -> bool:
        exc = record.exc_info[1] if record.exc_info else None
        if not isinstance(exc, Waiting):
            return True
        record.levelno, record.levelname = logging.DEBUG, "DEBUG"
        record.exc_info, record.exc_text = None, None
        return logging.getLogger(record.name).isEnabledFor(logging.DEBUG)


# The logger Celery's task tracer writes "rejected" lines to, in every pool process.
logging.getLogger("celery.app.trace").addFilter(WaitingIsDebug())


def requeue(retry_in_s: float, why: str) -> NoReturn:
    """Put this message back at the end of its queue after a short pause, keeping its retry
    count: no countdown, so a long wait never piles messages up in a worker's memory (ETA
    messages are held there) and the process is soon free for the other queues."""
    time.sleep(min(max(retry_in_s, 0.0), REQUEUE_PAUSE_S))
    raise Waiting(why, requeue=True)


def retry_or_give_up(task: Task, settings: Settings, exc: RetryableError,
                     give_up: Callable[[RetryableError, int], None]) -> None:
    """Retry with exponential backoff and jitter, or, past max_retries, call give_up."""
    retries = task.request.retries
    if retries >= settings.max_retries:
        give_up(exc, retries)
        return
    countdown = retry_countdown(settings, retries, getattr(exc, "retry_after_s", None))
    raise task.retry(countdown=countdown, max_retries=None, exc=exc)
