"""Credit budgets in the pipeline: reserve before a call, hold a job over budget, settle with
the task's ConsumeApiPoint, and let held jobs go on once a budget has room.

A held job is ON_HOLD (its message acknowledged, the job on the HELD_JOBS index): not failed,
not retried in a loop. `resume_held` (run by `cutout budget` after a change and by the
sweeper, so a new UTC day frees them too) puts back to ACCEPTED as many as the budgets now
have room for, oldest first; the caller publishes them.
"""

from __future__ import annotations

import logging

from tasks.stages.runtime import Runtime
from tasks.store.budgets import HELD_JOBS, Budgets
from tasks.store.ledger import Ledger
from tasks.store.records import JobRecord, JobState

__all__ = ["release_budget", "reserve_or_hold", "resume_held", "settle_budget"]

log = logging.getLogger(__name__)

RESUME_LIMIT = 10_000  # held jobs looked at per resume


def reserve_or_hold(rt: Runtime, record: JobRecord, owner: str) -> bool:
    """Reserve the call's credits (True), or put the job ON_HOLD when a budget has no room."""
    booked = rt.budgets.reserve(record.job_id, rt.settings.credits_per_call)
    if booked.verdict != "hold":
        return True
    _hold(rt, record, owner, booked.why)
    return False


def release_budget(rt: Runtime, job_id: str) -> None:
    """The call was surely not taken: its reservation goes back."""
    rt.budgets.settle(job_id, None)


def settle_budget(rt: Runtime, job_id: str, credits: float) -> None:
    """The API reported what the task cost: spent replaces reserved (once per job)."""
    rt.budgets.settle(job_id, credits)


def _hold(rt: Runtime, record: JobRecord, owner: str, why: str) -> None:
    done, _ = rt.ledger.transition(
        record.job_id, [JobState.SUBMITTING], JobState.ON_HOLD, fields={"hold_reason": why},
        clear=["lease_until", "lease_owner", "call_started_at"], event="job.on_hold",
        event_fields={"reason": why}, expect={"lease_owner": owner}, index=(HELD_JOBS, True))
    if done:
        log.info("job %s ON_HOLD: its call would pass the %s credit budget", record.job_id, why)


def resume_held(ledger: Ledger, budgets: Budgets, credits_per_call: float
                ) -> list[tuple[str, str]]:
    """Back to ACCEPTED: the held jobs the budgets now have room for, oldest first; returns
    (job id, reference) pairs to publish."""
    ids: list[str] = ledger.redis.zrange(HELD_JOBS, 0, RESUME_LIMIT - 1)  # type: ignore[assignment]
    if not ids:
        return []
    daily = budgets.today().room
    batch_room: dict[str, float] = {}
    resumed = []
    for job_id, record in zip(ids, ledger.get_many(ids), strict=True):
        if record is None or record.state is not JobState.ON_HOLD:
            ledger.redis.zrem(HELD_JOBS, job_id)
            continue
        room = _batch_room(budgets, record.batch, batch_room)
        if min(daily, room) < credits_per_call - 1e-9:
            continue
        if _resume(ledger, job_id):
            daily -= credits_per_call
            if record.batch:
                batch_room[record.batch] = room - credits_per_call
            resumed.append((job_id, record.reference))
    return resumed


def _batch_room(budgets: Budgets, batch: str | None, known: dict[str, float]) -> float:
    if not batch:
        return float("inf")
    if batch not in known:
        known[batch] = budgets.batch(batch).room
    return known[batch]


def _resume(ledger: Ledger, job_id: str) -> bool:
    done, _ = ledger.transition(job_id, [JobState.ON_HOLD], JobState.ACCEPTED,
                                clear=["hold_reason"], event="job.resumed",
                                index=(HELD_JOBS, False))
    return done
