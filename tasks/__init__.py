"""The Celery app (`celery -A tasks worker`) and the pipeline's stages.

Importing the package registers every task: cutout.submit, cutout.persist, cutout.poll,
cutout.collect; and the worker's hooks: its logs (tasks.logs) and its outbox thread for
metrics and webhooks (tasks.webhooks).
"""

from tasks import collect, logs, poll, submit, webhooks  # noqa: F401  (registers them)
from tasks.celery_app import app

__all__ = ["app"]
