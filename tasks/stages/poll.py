"""The poll stage without Celery: ask about up to N due tasks in one ListTasksDetails call,
hand finished ones to collect, fail failed ones, and push pending ones back with backoff."""

from __future__ import annotations

import logging
import time
from collections import defaultdict
from dataclasses import dataclass, field

from picpik.errors import CutoutError, RetryableError, Throttled
from picpik.models import TaskDetail
from tasks.limits.limiter import call_lease_s
from tasks.stages.backoff import poll_delay
from tasks.stages.runtime import Runtime
from tasks.stages.submit import TOKEN_WAIT_S
from tasks.store.ledger import job_key
from tasks.store.records import JobRecord, JobState

__all__ = ["Finished", "PollResult", "poll_batch"]

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Finished:
    job_id: str
    urls: tuple[str, ...]
    credits: float


@dataclass
class PollResult:
    calls: int = 0
    finished: list[Finished] = field(default_factory=list)
    failed: int = 0
    pending: int = 0


def poll_batch(rt: Runtime) -> PollResult:
    """One ListTasksDetails call for the due jobs (none when nothing is due). Raises TokenWait
    when no token comes within the in-task wait."""
    result = PollResult()
    due, _ = rt.schedule.status()
    if not due:
        return result
    s = rt.settings
    with rt.limiter.call(TOKEN_WAIT_S):
        ids = rt.schedule.claim_due(s.poll_batch_size, call_lease_s(s))
        jobs = _submitted(rt, ids)
        if not jobs:
            return result
        result.calls = 1
        try:
            details = rt.client.list_tasks_details(list(jobs))
        except CutoutError as exc:
            _poll_failed(rt, list(jobs.values()), exc)
            return result
    _sort(rt, jobs, details, result)
    return result


def _submitted(rt: Runtime, ids: list[str]) -> dict[str, JobRecord]:
    """TaskUID -> record for the claimed ids still SUBMITTED; the others leave the schedule."""
    jobs: dict[str, JobRecord] = {}
    stale = []
    for job_id, record in zip(ids, rt.ledger.get_many(ids), strict=True):
        if record and record.state is JobState.SUBMITTED and record.task_uid:
            jobs[record.task_uid] = record
        else:
            stale.append(job_id)
    rt.schedule.remove(stale)
    return jobs


def _poll_failed(rt: Runtime, records: list[JobRecord], exc: CutoutError) -> None:
    """The call itself failed: the jobs are fine, ask again later."""
    if isinstance(exc, Throttled):
        rt.limiter.throttled(exc.retry_after_s)
    delay = rt.settings.poll_interval_s if isinstance(exc, RetryableError) else \
        rt.settings.poll_max_interval_s
    log.warning("ListTasksDetails for %d tasks failed (%s); again in %.1f s",
                len(records), exc, delay)
    rt.schedule.reschedule([r.job_id for r in records], delay)


def _sort(rt: Runtime, jobs: dict[str, JobRecord], details: list[TaskDetail],
          result: PollResult) -> None:
    by_uid = {d.task_uid: d for d in details}
    later: dict[float, list[str]] = defaultdict(list)
    for uid, record in jobs.items():
        detail = by_uid.get(uid)
        state = detail.state if detail else "pending"
        if detail and state == "finished":
            result.finished.append(Finished(record.job_id, detail.img_list,
                                            detail.consume_api_point))
        elif detail and state == "failed":
            result.failed += 1
            _task_failed(rt, record, detail)
        elif _past_deadline(rt, record):
            result.failed += 1
            _deadline(rt, record, detail)
        else:
            result.pending += 1
            later[_next_delay(rt, record)].append(record.job_id)
    for delay, ids in later.items():
        rt.schedule.reschedule(ids, delay)
    pipe = rt.redis.pipeline(transaction=False)
    for record in jobs.values():
        pipe.hincrby(job_key(record.job_id), "polls", 1)
    pipe.execute()


def _next_delay(rt: Runtime, record: JobRecord) -> float:
    s = rt.settings
    return poll_delay(record.polls + 1, s.poll_interval_s, s.poll_max_interval_s)


def _past_deadline(rt: Runtime, record: JobRecord) -> bool:
    started = record.submitted_at or record.created_at or time.time()
    return time.time() - started > rt.settings.poll_deadline_s


def _task_failed(rt: Runtime, record: JobRecord, detail: TaskDetail) -> None:
    message = detail.error_message or f"the API reports the task as {detail.status!r}"
    rt.ledger.fail(record.job_id, [JobState.SUBMITTED], "poll", f"task_error:{detail.error_code}",
                   f"task {detail.task_uid}: {message}", credits=detail.consume_api_point)


def _deadline(rt: Runtime, record: JobRecord, detail: TaskDetail | None) -> None:
    status = detail.status if detail and detail.status else "not reported"
    rt.ledger.fail(record.job_id, [JobState.SUBMITTED], "poll", "deadline",
                   f"task {record.task_uid} still {status} after the poll deadline of "
                   f"{rt.settings.poll_deadline_s:.0f} s (CUTOUT_POLL_DEADLINE_S)")
