"""The collect queue's task: `cutout.collect`, the results into the output store."""

from __future__ import annotations

from typing import Any

from picpik.errors import PermanentError, RetryableError
from tasks.celery_app import app
from tasks.retrying import TASK_OPTIONS, retry_or_give_up
from tasks.stages.collect import collect_failed, collect_job
from tasks.stages.runtime import runtime

__all__ = ["collect"]


@app.task(name="cutout.collect", **TASK_OPTIONS)
def collect(self: Any, job_id: str, urls: list[str], credits: float = 0.0) -> dict[str, Any]:
    """Download the job's result images (before the API deletes them) and finish the job."""
    rt = runtime()
    try:
        state = collect_job(rt, job_id, urls, credits)
    except PermanentError as exc:
        collect_failed(rt, job_id, exc, exc.message)
        return {"job_id": job_id, "state": "FAILED"}
    except RetryableError as exc:
        retry_or_give_up(self, rt.settings, exc, lambda e, n: collect_failed(
            rt, job_id, None, f"gave up after {n} retries: {e.message}"))
        return {"job_id": job_id, "state": "FAILED"}
    return {"job_id": job_id, "state": str(state) if state else None}
