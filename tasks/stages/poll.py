"""The poll stage without Celery: ask about up to N due tasks in one ListTasksDetails call,
move finished ones to the collect schedule, fail failed ones, and push pending ones back with
backoff.

A call that fails for a reason one entry of the answer could cause (an unreadable answer, a
refusal) halves the batch its jobs may be asked about in, so a bad entry is soon asked about
alone; alone, it fails its job after CUTOUT_MAX_RETRIES such answers in a row. Transient
failures (5xx, timeouts, throttles) only wait. Either way, the deadline holds.
"""

from __future__ import annotations

import logging
import time
from collections import defaultdict
from dataclasses import dataclass
from typing import Any

from picpik.errors import CutoutError, MalformedAnswer, PermanentError, Throttled
from picpik.models import TaskDetail
from tasks.limits.limiter import call_lease_s
from tasks.stages.backoff import poll_delay
from tasks.stages.budget import settle_budget
from tasks.stages.runtime import Runtime
from tasks.stages.submit import TOKEN_WAIT_S
from tasks.store.ledger import job_key
from tasks.store.records import JobRecord, JobState
from tasks.store.scripts import run_scripts

__all__ = ["PollResult", "poll_batch"]

log = logging.getLogger(__name__)

# The fields of a job that polling it reads (not its whole history).
FIELDS = ("task_uid", "polls", "poll_errors", "poll_cap", "submitted_at", "created_at")


@dataclass
class PollResult:
    calls: int = 0
    finished: int = 0
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
    # The claims below happen while the token's start comes; the request leaves at it.
    with rt.limiter.call(TOKEN_WAIT_S, leave=False) as grant:
        ids = rt.schedule.claim_due(s.poll_batch_size, call_lease_s(s))
        jobs = _within_cap(rt, _submitted(rt, ids))
        if not jobs:
            return result
        result.calls = 1
        try:
            details = rt.client.list_tasks_details(list(jobs), before_send=grant.leave)
        except CutoutError as exc:
            _poll_failed(rt, list(jobs.values()), exc, result)
            return result
    _sort(rt, jobs, details, result)
    return result


def _submitted(rt: Runtime, ids: list[str]) -> dict[str, JobRecord]:
    """TaskUID -> record for the claimed ids still SUBMITTED; the others leave the schedule."""
    jobs: dict[str, JobRecord] = {}
    stale = []
    for job_id, record in zip(ids, rt.ledger.get_many_partial(ids, FIELDS), strict=True):
        if record and record.state is JobState.SUBMITTED and record.task_uid:
            jobs[record.task_uid] = record
        else:
            stale.append(job_id)
    rt.schedule.remove(stale)
    return jobs


def _within_cap(rt: Runtime, jobs: dict[str, JobRecord]) -> dict[str, JobRecord]:
    """The jobs that may share this call: as many as the smallest cap among them allows (the
    most suspect first); the others are due again at once, for the next call."""
    ordered = sorted(jobs.items(), key=lambda item: item[1].poll_cap or len(jobs))
    cap = min((r.poll_cap for _, r in ordered if r.poll_cap), default=len(ordered))
    rt.schedule.reschedule([r.job_id for _, r in ordered[cap:]], 0.0)
    return dict(ordered[:cap])


def _poll_failed(rt: Runtime, records: list[JobRecord], exc: CutoutError,
                 result: PollResult) -> None:
    """The call failed: the jobs past their deadline fail, the others are asked again later
    (in smaller batches, when the answer itself may be at fault)."""
    if isinstance(exc, Throttled):
        rt.limiter.throttled(exc.retry_after_s)
    suspect = isinstance(exc, PermanentError | MalformedAnswer)
    # A throttle, a 5xx or a timeout is asked again by itself (INFO); an answer the client
    # cannot read or that refuses the call is worth an operator's look.
    log.log(logging.WARNING if suspect else logging.INFO,
            "ListTasksDetails for %d tasks failed (%s)", len(records), exc)
    later = []
    for record in records:
        if _past_deadline(rt, record):
            result.failed += 1
            _deadline(rt, record, None)
        elif suspect and len(records) == 1 and record.poll_errors + 1 >= rt.settings.max_retries:
            result.failed += 1
            _unreadable(rt, record, exc)
        else:
            later.append(record.job_id)
    if suspect:
        _note_suspects(rt, later, max(1, len(records) // 2), alone=len(records) == 1)
    rt.schedule.reschedule(later, rt.settings.poll_interval_s)


def _note_suspects(rt: Runtime, job_ids: list[str], cap: int, *, alone: bool) -> None:
    """Halve the batch these jobs may share; count the failures a job had on its own."""
    pipe = rt.redis.pipeline(transaction=False)
    for job_id in job_ids:
        pipe.hset(job_key(job_id), "poll_cap", cap)
        if alone:
            pipe.hincrby(job_key(job_id), "poll_errors", 1)
    pipe.execute()


def _sort(rt: Runtime, jobs: dict[str, JobRecord], details: list[TaskDetail],
          result: PollResult) -> None:
    by_uid = {d.task_uid: d for d in details}
    later: dict[float, list[str]] = defaultdict(list)
    finished = []
    for uid, record in jobs.items():
        detail = by_uid.get(uid)
        state = detail.state if detail else "pending"
        if detail and state == "finished":
            result.finished += 1
            finished.append((record, detail))
        elif detail and state == "failed":
            result.failed += 1
            _task_failed(rt, record, detail)
        elif _past_deadline(rt, record):
            result.failed += 1
            _deadline(rt, record, detail)
        else:
            result.pending += 1
            later[_next_delay(rt, record)].append(record.job_id)
    _finished(rt, finished)
    for delay, ids in later.items():
        rt.schedule.reschedule(ids, delay)
    _count_answers(rt, list(jobs.values()))


def _count_answers(rt: Runtime, records: list[JobRecord]) -> None:
    """One more answer for each job; a readable answer clears the suspicion."""
    pipe = rt.redis.pipeline(transaction=False)
    for record in records:
        pipe.hincrby(job_key(record.job_id), "polls", 1)
        if record.poll_errors or record.poll_cap:
            pipe.hdel(job_key(record.job_id), "poll_errors", "poll_cap")
    pipe.execute()


def _finished(rt: Runtime, finished: list[tuple[JobRecord, TaskDetail]]) -> None:
    """The tasks finished at the API: their result URLs go on their jobs, the jobs on the
    collect schedule (each only for the TaskUID it still holds), and what each cost settles
    its credit reservation (once per job), all in one round trip."""
    if not finished:
        return
    run_scripts(rt.redis, [*(rt.ledger.transition_call(
        record.job_id, [JobState.SUBMITTED], JobState.SUBMITTED,
        fields={"result_urls": list(detail.img_list), "credits": detail.consume_api_point,
                "api_finished_at": "__now__"},
        collect_in_s=0.0, expect={"task_uid": detail.task_uid}) for record, detail in finished),
        *(rt.budgets.settle_call(record.job_id, detail.consume_api_point)
          for record, detail in finished)])


def _next_delay(rt: Runtime, record: JobRecord) -> float:
    s = rt.settings
    return poll_delay(record.polls + 1, s.poll_interval_s, s.poll_max_interval_s)


def _past_deadline(rt: Runtime, record: JobRecord) -> bool:
    started = record.submitted_at or record.created_at or time.time()
    return time.time() - started > rt.settings.poll_deadline_s


def _task_failed(rt: Runtime, record: JobRecord, detail: TaskDetail) -> None:
    message = detail.error_message or f"the API reports the task as {detail.status!r}"
    _fail(rt, record, f"task_error:{detail.error_code}", f"task {detail.task_uid}: {message}",
          credits=detail.consume_api_point)
    settle_budget(rt, record.job_id, detail.consume_api_point)


def _deadline(rt: Runtime, record: JobRecord, detail: TaskDetail | None) -> None:
    status = detail.status if detail and detail.status else "not reported"
    _fail(rt, record, "deadline",
          f"task {record.task_uid} still {status} after the poll deadline of "
          f"{rt.settings.poll_deadline_s:.0f} s (CUTOUT_POLL_DEADLINE_S)")


def _unreadable(rt: Runtime, record: JobRecord, exc: CutoutError) -> None:
    _fail(rt, record, exc.code,
          f"task {record.task_uid}: asked about alone, ListTasksDetails failed "
          f"{record.poll_errors + 1} times in a row: {exc.message}")


def _fail(rt: Runtime, record: JobRecord, code: str, message: str, **fields: Any) -> None:
    if rt.ledger.fail(record.job_id, [JobState.SUBMITTED], "poll", code, message,
                      expect={"task_uid": record.task_uid}, **fields):
        log.info("job %s failed at poll: %s", record.job_id, message)
