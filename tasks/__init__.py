"""The Celery app (`celery -A tasks worker`) and the pipeline's stages.

Importing the package registers every task: cutout.submit, cutout.persist, cutout.poll,
cutout.collect.
"""

from tasks import collect, poll, submit  # noqa: F401  (registers the tasks)
from tasks.celery_app import app

__all__ = ["app"]
