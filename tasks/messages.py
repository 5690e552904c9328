"""The one place that builds a job's message: `cutout.submit` (task id = job id, queue
`submit`) chained to `cutout.persist` (queue `poll`). Used by producers and the sweeper."""

from __future__ import annotations

from collections.abc import Iterable

from celery import Celery
from kombu import Producer

__all__ = ["send_jobs"]


def send_jobs(app: Celery, jobs: Iterable[tuple[str, str]], producer: Producer | None = None
              ) -> None:
    """Publish one submit -> persist chain per (job id, reference), over one producer."""
    persist = app.signature("cutout.persist", queue="poll")
    with app.producer_or_acquire(producer) as publisher:
        for job_id, reference in jobs:
            app.send_task("cutout.submit", kwargs={"reference": reference}, task_id=job_id,
                          queue="submit", chain=[persist], producer=publisher)
