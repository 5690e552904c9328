"""The Celery app (`celery -A tasks worker`) and the pipeline's stages.

Importing the package registers every task (cutout.submit, cutout.persist, and cutout.poll for
an older version's messages) and the worker's own threads (the collectors, the poller, the
poll-loop watch, the outbox for metrics and webhooks) and its log set-up (tasks.logs).
"""

from tasks import logs, poll, submit, upkeep, webhooks  # noqa: F401  (tasks, signal handlers)
from tasks.celery_app import app

__all__ = ["app"]
