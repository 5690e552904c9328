"""The sweeper, without Celery: find jobs that stopped moving and may have lost their message.

- A SUBMITTING job whose lease ran out (its worker died: leases are renewed while a worker
  lives) is submitted again under its own id within a sweep or two. The claim makes that safe:
  a job whose call had started ends NEEDS_RECONCILIATION, never paid twice.
- An ACCEPTED job that has not changed for longer than a redelivered message could take
  (visibility timeout + task time limit) is submitted again too, however long the queue: its
  message may be gone (a producer that died between recording and publishing, a Redis that
  lost it). A duplicate is harmless, and a job is looked at once per that period at most.
- A SUBMITTED job on neither schedule is put back on the one it belongs to.
- ON_HOLD jobs (over a credit budget) that a budget has room for again (raised, or a new UTC
  day) go back to ACCEPTED and are published.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from tasks.stages.budget import resume_held
from tasks.stages.runtime import Runtime
from tasks.store.ledger import COLLECT_SCHEDULE, LEASES, OPEN_JOBS, POLL_SCHEDULE, redis_now
from tasks.store.records import JobRecord, JobState

__all__ = ["SweepResult", "stale_after_s", "sweep"]

SWEEP_LIMIT = 500  # jobs looked at per sweep, in each index


@dataclass
class SweepResult:
    resubmit: list[tuple[str, str]] = field(default_factory=list)  # (job id, reference)
    rescheduled: list[str] = field(default_factory=list)


def stale_after_s(rt: Runtime) -> float:
    return float(rt.settings.visibility_timeout_s + rt.settings.task_time_limit_s)


def sweep(rt: Runtime) -> SweepResult:
    """Look at up to SWEEP_LIMIT lapsed leases and stale open jobs; return what must be
    published again (SUBMITTED jobs are put back on their schedule here)."""
    now = redis_now(rt.redis)
    result = SweepResult()
    _lapsed_leases(rt, now, result)
    _stale_open_jobs(rt, now, result)
    result.resubmit.extend(resume_held(rt.ledger, rt.budgets, rt.settings.credits_per_call))
    return result


def _lapsed_leases(rt: Runtime, now: float, result: SweepResult) -> None:
    ids: list[str] = rt.redis.zrangebyscore(LEASES, "-inf", now, 0,  # type: ignore[assignment]
                                            SWEEP_LIMIT)
    for job_id, record in zip(ids, rt.ledger.get_many(ids), strict=True):
        if record and record.state is JobState.SUBMITTING and (record.lease_until or 0) < now:
            result.resubmit.append((job_id, record.reference))
        elif record and record.state is JobState.SUBMITTING:
            continue  # renewed meanwhile: its own entry was moved ahead too
    if ids:
        rt.redis.zrem(LEASES, *ids)  # a resubmitted job is claimed (and indexed) anew


def _stale_open_jobs(rt: Runtime, now: float, result: SweepResult) -> None:
    ids: list[str] = rt.redis.zrangebyscore(  # type: ignore[assignment]
        OPEN_JOBS, "-inf", now - stale_after_s(rt), 0, SWEEP_LIMIT)
    resubmitted = {job_id for job_id, _ in result.resubmit}
    for job_id, record in zip(ids, rt.ledger.get_many(ids), strict=True):
        if record is None or record.terminal:
            rt.redis.zrem(OPEN_JOBS, job_id)
            continue
        if record.state is JobState.ACCEPTED and job_id not in resubmitted:
            result.resubmit.append((job_id, record.reference))
        elif record.state is JobState.SUBMITTED and _reschedule(rt, record, now):
            result.rescheduled.append(job_id)
        rt.redis.zadd(OPEN_JOBS, {job_id: now}, xx=True)  # looked at: not again for a while


def _reschedule(rt: Runtime, record: JobRecord, now: float) -> bool:
    """Put a SUBMITTED job on no schedule back on the one it belongs to; True if it was off."""
    job_id = record.job_id
    if rt.redis.zscore(POLL_SCHEDULE, job_id) is not None or \
            rt.redis.zscore(COLLECT_SCHEDULE, job_id) is not None:
        return False
    key = COLLECT_SCHEDULE if record.result_urls else POLL_SCHEDULE
    return bool(rt.redis.zadd(key, {job_id: now}, nx=True))
