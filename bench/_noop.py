"""`celery -A bench._noop worker`: bare Celery with cutout's Celery settings (acks_late, results
stored, task events on, prefetch 1) and one task that does nothing: the baseline of
`python -m bench cost`. It imports nothing of `tasks`, so none of the pipeline's signal
handlers, threads or log set-up run in it."""

from __future__ import annotations

from celery import Celery

from config import get_settings
from config.celery import celery_config

__all__ = ["NOOP", "app", "noop"]

NOOP = "bench.noop"

app = Celery("cutout-noop", set_as_current=True)
app.conf.update(celery_config(get_settings()))


@app.task(name=NOOP, acks_late=True)
def noop(reference: str) -> None:
    """Nothing: what Celery itself costs per task."""
