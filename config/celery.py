"""The Celery configuration of cutout, built from Settings, and the timing rules it must keep.

Why these values: DESIGN.md "Rules the whole system keeps" 3 (nothing accepted is lost) and
STACK-NOTES.md (a countdown longer than the visibility timeout runs twice).
"""

from __future__ import annotations

from typing import Any

from kombu import Queue

from config.settings import Settings

__all__ = [
    "QUEUES",
    "TASK_ROUTES",
    "TimingError",
    "celery_config",
    "max_countdown_s",
    "timing_problems",
]

QUEUES = ("submit", "poll", "collect")
TASK_ROUTES = {
    "cutout.submit": {"queue": "submit"},
    "cutout.persist": {"queue": "poll"},
    "cutout.poll": {"queue": "poll"},
    "cutout.collect": {"queue": "collect"},
}
# Room between the longest countdown and the visibility timeout, for clock skew and queueing.
VISIBILITY_MARGIN_S = 5.0


class TimingError(ValueError):
    """The settings break a timing rule; a message could be delivered twice or lost."""


def max_countdown_s(settings: Settings) -> float:
    """The longest countdown any task may use: well below the visibility timeout."""
    vt, limit = settings.visibility_timeout_s, settings.task_time_limit_s
    return max(1.0, vt - limit - VISIBILITY_MARGIN_S)


def timing_problems(settings: Settings) -> list[str]:
    """Every timing rule the settings break (an empty list when all hold)."""
    vt = settings.visibility_timeout_s
    problems = []
    if vt <= settings.task_time_limit_s + settings.retry_max_delay_s + VISIBILITY_MARGIN_S:
        problems.append(
            f"visibility_timeout_s ({vt}) must exceed task_time_limit_s "
            f"({settings.task_time_limit_s}) + retry_max_delay_s ({settings.retry_max_delay_s})"
            f" + {VISIBILITY_MARGIN_S}"
        )
    if vt <= settings.task_time_limit_s + settings.poll_max_interval_s + VISIBILITY_MARGIN_S:
        problems.append(
            f"visibility_timeout_s ({vt}) must exceed task_time_limit_s + poll_max_interval_s "
            f"({settings.poll_max_interval_s}) + {VISIBILITY_MARGIN_S}"
        )
    fetch_and_call = settings.fetch_timeout_s + settings.connect_timeout_s + settings.read_timeout_s
    if settings.task_time_limit_s <= fetch_and_call:
        problems.append(
            f"task_time_limit_s ({settings.task_time_limit_s}) must exceed fetch_timeout_s + "
            f"connect_timeout_s + read_timeout_s ({fetch_and_call})"
        )
    return problems


def celery_config(settings: Settings) -> dict[str, Any]:
    """The Celery settings (lowercase names) for an app using these Settings."""
    problems = timing_problems(settings)
    if problems:
        raise TimingError("; ".join(problems))
    transport = {
        "visibility_timeout": settings.visibility_timeout_s,
        # Unacked messages of a dead worker come back once their visibility timeout passed;
        # look for them often enough that the wait is about the timeout, not much more.
        # kombu scans only on every `throttle`-th tick (default 10): 1 makes the interval the
        # real period rather than a tenth of it.
        "unacked_restore_interval": max(1, min(60, settings.visibility_timeout_s // 4)),
        "unacked_restore_throttle": 1,
    }
    return {
        "broker_url": settings.broker,
        "result_backend": settings.result_backend,
        "broker_transport_options": transport,
        "result_backend_transport_options": {"visibility_timeout": settings.visibility_timeout_s},
        "broker_connection_retry_on_startup": True,
        # JSON only: a pickle payload from the broker could run code.
        "task_serializer": "json",
        "result_serializer": "json",
        "accept_content": ["json"],
        "result_accept_content": ["json"],
        "event_serializer": "json",
        # Nothing accepted is lost: ack after the work, requeue when the pool process dies.
        "task_acks_late": True,
        "task_reject_on_worker_lost": True,
        "worker_prefetch_multiplier": 1,
        "worker_cancel_long_running_tasks_on_connection_loss": True,
        "task_time_limit": settings.task_time_limit_s,
        "task_soft_time_limit": max(1, settings.task_time_limit_s - 5),
        "result_expires": settings.result_expires_s,
        # Events for Flower.
        "worker_send_task_events": True,
        "task_send_sent_event": True,
        "task_track_started": True,
        "task_queues": [Queue(name, routing_key=name) for name in QUEUES],
        "task_default_queue": "submit",
        "task_routes": TASK_ROUTES,
        "worker_hijack_root_logger": False,
    }
