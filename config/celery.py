"""The Celery configuration of cutout, built from Settings (the timing rules it checks are in
config/timing.py, the queue names in config/queues.py)."""

from __future__ import annotations

from typing import Any

from kombu import Queue

from config.queues import QUEUES, TASK_ROUTES
from config.settings import Settings
from config.timing import TimingError, timing_problems

__all__ = ["AMQP_SCHEMES", "celery_config", "is_amqp"]

# Broker URL schemes that mean RabbitMQ (kombu's py-amqp transport); anything else is Redis.
AMQP_SCHEMES = frozenset({"amqp", "amqps", "pyamqp"})


def is_amqp(url: str) -> bool:
    """Whether this broker URL is a RabbitMQ one."""
    return url.partition("://")[0].lower() in AMQP_SCHEMES


def celery_config(settings: Settings) -> dict[str, Any]:
    """The Celery settings (lowercase names) for an app using these Settings."""
    problems = timing_problems(settings)
    if problems:
        raise TimingError("; ".join(problems))
    return {
        "broker_url": settings.broker,
        "result_backend": settings.result_backend,
        **_broker_options(settings),
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
        # A broker blip must not cut a submit in the middle of its (paid) API call: the task
        # finishes, and a message redelivered meanwhile finds the job claimed or submitted.
        "worker_cancel_long_running_tasks_on_connection_loss": False,
        # A shutdown lets calls in flight finish, then returns unstarted (and countdown)
        # messages to the broker.
        "worker_soft_shutdown_timeout": settings.soft_shutdown_timeout_s,
        "worker_enable_soft_shutdown_on_idle": True,
        "task_time_limit": settings.task_time_limit_s,
        "task_soft_time_limit": max(1, settings.task_time_limit_s - 5),
        "result_expires": settings.result_expires_s,
        # Events for Flower.
        "worker_send_task_events": True,
        "task_send_sent_event": True,
        "task_track_started": True,
        "task_queues": _queues(settings),
        "task_default_queue": "submit",
        "task_routes": TASK_ROUTES,
        "worker_hijack_root_logger": False,
    }


def _broker_options(settings: Settings) -> dict[str, Any]:
    """What only one kind of broker understands (docs/brokers.md)."""
    if is_amqp(settings.broker):
        # RabbitMQ gives a dead consumer's unacked messages back as soon as its connection
        # closes: no visibility timeout to tune. Publisher confirms: a publish returns only
        # once the broker holds the message, so a job recorded ACCEPTED is not silently lost.
        return {"broker_transport_options": {"confirm_publish": True}}
    return {"broker_transport_options": {
        "visibility_timeout": settings.visibility_timeout_s,
        # Unacked messages of a dead worker come back once their visibility timeout passed;
        # look for them often enough that the wait is about the timeout, not much more.
        # kombu scans only on every `throttle`-th tick (default 10): 1 makes the interval the
        # real period rather than a tenth of it.
        "unacked_restore_interval": max(1, min(60, settings.visibility_timeout_s // 4)),
        "unacked_restore_throttle": 1,
    }}


def _queues(settings: Settings) -> list[Queue]:
    """Durable queues (Celery's messages are persistent). On RabbitMQ, classic queues, said
    explicitly so that a vhost whose default queue type is quorum does not turn them into
    quorum queues: those would need every countdown rounded to whole seconds and a delivery
    limit above the requeues of a backlog (docs/brokers.md, "Classic, not quorum")."""
    arguments = {"x-queue-type": "classic"} if is_amqp(settings.broker) else None
    return [Queue(name, routing_key=name, durable=True, queue_arguments=arguments)
            for name in QUEUES]
