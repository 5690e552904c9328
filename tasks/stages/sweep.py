"""The sweeper, without Celery: find jobs that stopped moving and may have lost their message.

A job is stale when it has not changed for longer than a redelivered message could take
(visibility timeout + task time limit). Then: an ACCEPTED job (only while the submit queue is
empty: otherwise it is probably still waiting its turn) or a SUBMITTING job whose lease ran out
is submitted again under its own id (the claim makes that safe: no second API call for a job
that was paid for); a SUBMITTED job missing from the poll schedule is put back on it.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from config.queues import QUEUES
from tasks.stages.runtime import Runtime
from tasks.store.ledger import OPEN_JOBS, POLL_SCHEDULE, redis_now
from tasks.store.records import JobState

__all__ = ["SweepResult", "stale_after_s", "sweep"]

SWEEP_LIMIT = 500  # jobs looked at per sweep
SUBMIT_QUEUE = QUEUES[0]


@dataclass
class SweepResult:
    resubmit: list[tuple[str, str]] = field(default_factory=list)  # (job id, reference)
    rescheduled: list[str] = field(default_factory=list)


def stale_after_s(rt: Runtime) -> float:
    return float(rt.settings.visibility_timeout_s + rt.settings.task_time_limit_s)


def sweep(rt: Runtime) -> SweepResult:
    """Look at up to SWEEP_LIMIT stale open jobs; return what must be published again."""
    now = redis_now(rt.redis)
    ids: list[str] = rt.redis.zrangebyscore(  # type: ignore[assignment]
        OPEN_JOBS, "-inf", now - stale_after_s(rt), 0, SWEEP_LIMIT)
    result = SweepResult()
    if not ids:
        return result
    queue_empty = rt.redis.llen(SUBMIT_QUEUE) == 0
    for job_id, record in zip(ids, rt.ledger.get_many(ids), strict=True):
        if record is None or record.terminal:
            rt.redis.zrem(OPEN_JOBS, job_id)
            continue
        lease_over = (record.lease_until or 0) < now
        if (record.state is JobState.ACCEPTED and queue_empty) or (
                record.state is JobState.SUBMITTING and lease_over):
            result.resubmit.append((job_id, record.reference))
        elif record.state is JobState.SUBMITTED and rt.redis.zadd(
                POLL_SCHEDULE, {job_id: now}, nx=True):
            result.rescheduled.append(job_id)
        rt.redis.zadd(OPEN_JOBS, {job_id: now}, xx=True)  # looked at: not again for a while
    return result
