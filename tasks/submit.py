"""The submit queue's tasks: `cutout.submit` (one API call per job; the job SUBMITTED with its
TaskUID) and, chained to it, `cutout.persist` (the TaskUID as the chain's result in the result
backend)."""

from __future__ import annotations

from typing import Any

from picpik.errors import InvalidInput, RetryableError
from picpik.models import parse_options
from tasks.celery_app import app
from tasks.poll import ensure_poll_loop
from tasks.retrying import TASK_OPTIONS, republish, requeue, retry_or_give_up
from tasks.stages.failpoints import failpoint
from tasks.stages.runtime import Runtime, runtime
from tasks.stages.submit import give_up, persist_job, submit_job
from tasks.store.records import JobState
from tasks.store.scripts import PipeHook

__all__ = ["persist", "submit"]


@app.task(name="cutout.submit", **TASK_OPTIONS)
def submit(self: Any, reference: str, options: dict[str, Any] | None = None,
           batch: str | None = None, output_dir: str | None = None) -> dict[str, Any]:
    """Submit the job whose id is this task's id (the record is created if a service sent
    the task by name without one)."""
    rt = runtime()
    job_id = self.request.id
    try:
        poll_loop = _poll_loop(rt)
        outcome = submit_job(rt, job_id, poll_loop)
        if outcome.missing:  # sent by name without a recorded job: record it, then go on
            _create_record(rt, job_id, reference, options or {}, batch, output_dir)
            outcome = submit_job(rt, job_id, poll_loop)
    except RetryableError as exc:
        retry_or_give_up(self, rt.settings, exc,
                         lambda e, n: give_up(rt, job_id, "submit", e, n))
        return {"job_id": job_id, "state": str(JobState.FAILED)}
    if outcome.waiting_for_token and outcome.retry_in_s is not None:
        requeue(outcome.retry_in_s, f"job {job_id} waits for an API token")
    if outcome.retry_in_s is not None:
        republish(self, rt.settings, outcome.retry_in_s, f"job {job_id} is held by another worker")
    result = {"job_id": job_id, "task_uid": outcome.task_uid,
              "state": str(outcome.state) if outcome.state else None}
    if outcome.task_uid and not (self.request.chain or self.request.callbacks):
        result = _persist(rt, result)  # sent by name without the chain: persist here
    failpoint(rt.settings, rt.redis, "before_ack")
    return result


# No STARTED state: it lasts a few milliseconds, and recording it is a result-backend read
# and write per job that no one needs (the submit task keeps its STARTED).
@app.task(name="cutout.persist", track_started=False, **TASK_OPTIONS)
def persist(self: Any, submitted: dict[str, Any]) -> dict[str, Any]:
    """The submit's answer as the chain's result (the ledger written only when the submit
    could not record the job SUBMITTED itself)."""
    return _persist(runtime(), submitted)


def _persist(rt: Runtime, submitted: dict[str, Any]) -> dict[str, Any]:
    """persist's work, also done by a submit sent without the chain."""
    if not submitted.get("task_uid") or submitted.get("state") == str(JobState.SUBMITTED):
        return submitted
    state = persist_job(rt, submitted["job_id"], submitted["task_uid"], also=_poll_loop(rt))
    return {**submitted, "state": str(state) if state else None}


def _poll_loop(rt: Runtime) -> PipeHook:
    """Queue the poll loop's start (a round within about poll_interval_s) on a pipeline."""
    return lambda pipe: ensure_poll_loop(rt.settings, rt.ticks, pipe=pipe)


def _create_record(rt: Runtime, job_id: str, reference: str, options: dict[str, Any],
                   batch: str | None, output_dir: str | None) -> None:
    try:
        params = parse_options(options).to_params()
    except InvalidInput as exc:
        rt.ledger.create(job_id, reference, {}, batch=batch, output_dir=output_dir)
        rt.ledger.fail(job_id, [JobState.ACCEPTED], "intake", exc.code, exc.message,
                       field=exc.field)
        return
    rt.ledger.create(job_id, reference, params, batch=batch, output_dir=output_dir)
