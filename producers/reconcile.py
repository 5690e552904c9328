"""Reconciling jobs left NEEDS_RECONCILIATION (a call the API may have taken, answer lost):
what the ledger holds beside what the API says now, attaching a TaskUID found on the API side,
or submitting a job again once a human has decided it was not taken.

The API calls (ListRunningTasks, ListTasksDetails) are signed, so they need the PrivateKey, and
take their tokens from the same global limiter as the workers: reconciling never pushes the
account over its rate limit.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from functools import partial
from typing import TypeVar

from picpik.errors import InvalidInput
from picpik.models import TaskDetail
from producers.api import ATTEMPT_FIELDS
from tasks.limits.limiter import TokenWait
from tasks.stages.runtime import Runtime
from tasks.store.ledger import ERROR_FIELDS, OPEN_JOBS, RECONCILE_JOBS
from tasks.store.records import JobRecord, JobState

__all__ = ["ApiView", "api_view", "attach", "flagged_jobs", "resubmit"]

TOKEN_PATIENCE_S = 30.0  # how long the CLI waits for a limiter token before giving up
# What a job loses when it is submitted again: everything about the call that was lost.
CALL_FIELDS = (*ATTEMPT_FIELDS, "credits", *ERROR_FIELDS)
T = TypeVar("T")


@dataclass(frozen=True)
class ApiView:
    """What the API says now: the TaskUIDs still in flight, the details of those no job here
    has recorded (the candidates for a flagged job), and of any TaskUID asked about."""

    running: list[str]
    unrecorded: list[TaskDetail]
    asked: list[TaskDetail] = field(default_factory=list)


def flagged_jobs(rt: Runtime, batch: str | None = None) -> list[JobRecord]:
    """The jobs in NEEDS_RECONCILIATION (of one batch, or all), oldest first."""
    if batch is not None:
        ids = rt.ledger.batch_ids(batch)
    else:
        ids = list(rt.redis.zrange(RECONCILE_JOBS, 0, -1))  # type: ignore[arg-type]
    records = [r for r in rt.ledger.get_many(ids)
               if r is not None and r.state is JobState.NEEDS_RECONCILIATION]
    return sorted(records, key=lambda r: (r.finished_at or 0.0, r.job_id))


def api_view(rt: Runtime, task_uids: Sequence[str] = ()) -> ApiView:
    """ListRunningTasks, then ListTasksDetails of the running TaskUIDs no open job holds and
    of `task_uids`."""
    running = _limited(rt, rt.client.list_running_tasks)
    recorded = _recorded_task_uids(rt)
    unknown = [uid for uid in running if uid not in recorded]
    wanted = list(dict.fromkeys([*unknown, *task_uids]))
    details: dict[str, TaskDetail] = {}
    for start in range(0, len(wanted), rt.settings.poll_batch_size):
        chunk = wanted[start:start + rt.settings.poll_batch_size]
        for detail in _limited(rt, partial(rt.client.list_tasks_details, chunk)):
            details[detail.task_uid] = detail
    return ApiView(running, [details[u] for u in unknown if u in details],
                   [details[u] for u in task_uids if u in details])


def attach(rt: Runtime, job_id: str, task_uid: str) -> JobRecord:
    """Record a TaskUID found on the API side: the job goes SUBMITTED with it, onto the poll
    schedule (polled and collected like any other). The API must know the TaskUID, and no
    other open job may hold it."""
    record = _flagged(rt, job_id)
    if record.task_uid and record.task_uid != task_uid:
        raise InvalidInput(f"job {job_id} already holds TaskUID {record.task_uid}",
                           field="task_uid")
    holder = _recorded_task_uids(rt).get(task_uid)
    if holder is not None and holder != job_id:
        raise InvalidInput(f"TaskUID {task_uid} is already job {holder}'s", field="task_uid")
    found = _limited(rt, partial(rt.client.list_tasks_details, [task_uid]))
    if not any(detail.task_uid == task_uid for detail in found):
        raise InvalidInput(f"the API knows no task {task_uid} for this PublicKey",
                           field="task_uid")
    done, state = rt.ledger.transition(
        job_id, [JobState.NEEDS_RECONCILIATION], JobState.SUBMITTED,
        fields={"task_uid": task_uid, "submitted_at": "__now__"},
        clear=["lease_until", "lease_owner", "finished_at", *ERROR_FIELDS],
        event="job.submitted", event_fields={"task_uid": task_uid},
        poll_in_s=0.0, expect={"task_uid": record.task_uid or ""})
    if not done:
        raise InvalidInput(f"job {job_id} is {state} now, no longer NEEDS_RECONCILIATION",
                           field="job_id")
    return rt.ledger.get(job_id) or record


def resubmit(rt: Runtime, job_id: str) -> JobRecord:
    """Back to ACCEPTED with the lost call forgotten (the caller publishes its message). Only
    for a job a human has found the API did not take: otherwise it is paid twice."""
    record = _flagged(rt, job_id)
    if record.task_uid:
        raise InvalidInput(f"job {job_id} holds TaskUID {record.task_uid}: the API took its "
                           f"call; attach it instead (--attach {job_id} {record.task_uid})",
                           field="job_id")
    done, state = rt.ledger.transition(job_id, [JobState.NEEDS_RECONCILIATION],
                                       JobState.ACCEPTED, clear=list(CALL_FIELDS),
                                       expect={"task_uid": record.task_uid or ""})
    if not done:
        raise InvalidInput(f"job {job_id} is {state} now, no longer NEEDS_RECONCILIATION",
                           field="job_id")
    return rt.ledger.get(job_id) or record


def _flagged(rt: Runtime, job_id: str) -> JobRecord:
    record = rt.ledger.get(job_id)
    if record is None:
        raise InvalidInput(f"no job {job_id}", field="job_id")
    if record.state is not JobState.NEEDS_RECONCILIATION:
        raise InvalidInput(f"job {job_id} is {record.state}, not NEEDS_RECONCILIATION",
                           field="job_id")
    return record


def _recorded_task_uids(rt: Runtime) -> dict[str, str]:
    """TaskUID -> job id for every open job that holds one (the jobs being polled)."""
    ids: list[str] = rt.redis.zrange(OPEN_JOBS, 0, -1)  # type: ignore[assignment]
    return {r.task_uid: r.job_id for r in rt.ledger.get_many(ids) if r is not None and r.task_uid}


def _limited(rt: Runtime, call: Callable[[], T]) -> T:
    """One API call with a token from the shared limiter, waiting for it a while if needed."""
    deadline = time.monotonic() + TOKEN_PATIENCE_S
    while True:
        try:
            with rt.limiter.call(1.0):
                return call()
        except TokenWait as exc:
            if time.monotonic() + exc.retry_in_s > deadline:
                raise
            time.sleep(min(exc.retry_in_s, 1.0))
