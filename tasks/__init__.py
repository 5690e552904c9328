"""The Celery app (`celery -A tasks worker`) and the pipeline's stages.

Importing the package registers every task (cutout.submit, cutout.persist, cutout.poll) and
the worker's own threads (the collectors, the poll-loop watch).
"""

from tasks import poll, submit, upkeep  # noqa: F401  (registers tasks and signal handlers)
from tasks.celery_app import app

__all__ = ["app"]
