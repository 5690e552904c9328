"""`celery -A bench._noop worker`: bare Celery with cutout's Celery settings (acks_late, results
stored, task events on, prefetch 1) and one task that does nothing: the baseline of
`python -m bench cost`, and a second one chained to it (the submit -> persist shape: two
messages per job). It imports nothing of `tasks`, so none of the pipeline's signal
handlers, threads or log set-up run in it."""

from __future__ import annotations

from typing import Any

from celery import Celery

from config import get_settings
from config.celery import celery_config

__all__ = ["NOOP", "NOOP_CHAINED", "app", "noop", "noop_chained"]

NOOP = "bench.noop"
NOOP_CHAINED = "bench.noop_chained"

app = Celery("cutout-noop", set_as_current=True)
app.conf.update(celery_config(get_settings()))


@app.task(name=NOOP, acks_late=True)
def noop(reference: str) -> None:
    """Nothing: what Celery itself costs per task."""


@app.task(name=NOOP_CHAINED, acks_late=True)
def noop_chained(parent_result: Any) -> None:
    """Nothing, run after a no-op that names it as its link (as persist follows submit)."""
