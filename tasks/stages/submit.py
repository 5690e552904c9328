"""The submit stage without Celery: claim, fetch, check, take a token, call RemoveBackground.

Returns what the task must do next; raises RetryableError only when a later attempt may
succeed and the API certainly did not take the call.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Callable
from dataclasses import dataclass

from redis.client import Pipeline

from picpik.errors import InvalidInput, PermanentError, RetryableError, Throttled
from picpik.models import RemoveBackgroundOptions, parse_options
from tasks.inputs.intake import load_image
from tasks.limits.limiter import TokenWait
from tasks.stages.budget import release_budget, reserve_or_hold
from tasks.stages.failpoints import failpoint
from tasks.stages.reuse import Gate, dedupe_gate
from tasks.stages.runtime import Runtime
from tasks.stages.shutdown import stop_signals_deferred
from tasks.store.claims import ClaimLost, begin_call, claim, mark_sent
from tasks.store.ledger import ERROR_FIELDS
from tasks.store.records import JobRecord, JobState
from tasks.store.scripts import PipeHook

__all__ = ["TOKEN_WAIT_S", "SubmitOutcome", "persist_job", "submit_job"]

log = logging.getLogger(__name__)

TOKEN_WAIT_S = 1.0  # longest in-task wait for a token; longer waits requeue the message
BUSY_RECHECK_S = 5.0  # a duplicate looks again this soon while another worker holds the job
LOST_CLAIM_RECHECK_S = 1.0  # a claim taken over while this process stalled: look again soon


@dataclass(frozen=True)
class SubmitOutcome:
    """task_uid: persist it. retry_in_s: look again later without counting a retry (the job
    waits for a token, or another worker holds it). missing: no such job recorded. Else:
    finished (state says how)."""

    job_id: str
    task_uid: str | None = None
    state: JobState | None = None
    retry_in_s: float | None = None
    waiting_for_token: bool = False
    missing: bool = False


def submit_job(rt: Runtime, job_id: str, on_submitted: PipeHook | None = None) -> SubmitOutcome:
    """Claim, fetch, check, pay (or reuse, wait, hold). A job the API took is SUBMITTED in the
    same step that records its TaskUID; `on_submitted` queues more commands in that round
    trip (the poll loop's start)."""
    try:
        rt.limiter.look(TOKEN_WAIT_S)  # no token, no claim, no fetch while booked up
    except TokenWait as exc:
        return SubmitOutcome(job_id, retry_in_s=exc.retry_in_s, waiting_for_token=True)
    owner = uuid.uuid4().hex  # this attempt's claim
    verdict = claim(rt.ledger, job_id, lease_s=rt.settings.lease_s, owner=owner)
    if verdict.verdict == "persist":
        return SubmitOutcome(job_id, task_uid=verdict.task_uid)
    if verdict.verdict == "busy":
        return SubmitOutcome(job_id, retry_in_s=min(verdict.busy_for_s + 0.1, BUSY_RECHECK_S))
    if verdict.verdict == "unknown":
        _needs_reconciliation(rt, job_id, None, "a submit attempt ended without a recorded "
                              "answer (its worker stopped after the call started)")
        return SubmitOutcome(job_id, state=JobState.NEEDS_RECONCILIATION)
    if verdict.verdict == "missing":
        return SubmitOutcome(job_id, missing=True)
    if verdict.verdict != "claimed":
        return SubmitOutcome(job_id, state=verdict.state)
    record = verdict.record
    assert record is not None  # claimed just now
    with rt.leases.holding(job_id, owner):
        failpoint(rt.settings, rt.redis, "after_claim")
        return _attempt(rt, record, owner, on_submitted)


def _attempt(rt: Runtime, record: JobRecord, owner: str,
             on_submitted: PipeHook | None) -> SubmitOutcome:
    job_id = record.job_id
    try:
        image, mime, options = prepare(rt, record)
    except PermanentError as exc:
        _fail(rt, job_id, owner, "fetch", exc)
        return SubmitOutcome(job_id, state=JobState.FAILED)
    except RetryableError:
        _release(rt, job_id, owner)
        raise
    gate = dedupe_gate(rt, record, owner, image, options)  # the same cutout: never paid twice
    if gate is Gate.REUSED:
        return SubmitOutcome(job_id, state=JobState.SUCCEEDED)
    if gate is Gate.WAIT:
        return SubmitOutcome(job_id, retry_in_s=rt.settings.dedupe_wait_s)
    if not reserve_or_hold(rt, record, owner):  # over a credit budget: parked, unpaid
        return SubmitOutcome(job_id, state=JobState.ON_HOLD)
    try:
        outcome = _call(rt, job_id, owner, image, mime, options, on_submitted)
    except TokenWait as exc:
        release_budget(rt, job_id)
        _release(rt, job_id, owner)
        return SubmitOutcome(job_id, retry_in_s=exc.retry_in_s, waiting_for_token=True)
    except RetryableError:
        release_budget(rt, job_id)  # raised only when the API surely did not take the call
        raise
    # Only a call that surely failed gives its credits back: an attempt that lost its claim
    # leaves them to the attempt that took the job over (they are booked on the job, once).
    if outcome.state is JobState.FAILED:
        release_budget(rt, job_id)
    return outcome


def prepare(rt: Runtime, record: JobRecord) -> tuple[bytes, str, RemoveBackgroundOptions]:
    """The image's bytes, MIME type and the checked options (the Box inside the image)."""
    options = parse_options(record.options)
    # Fetched, within the caps, decoded once, the Box inside it; errors name the reference.
    image, info = load_image(record.reference, rt.settings, options)
    return image, info.mime, options


def _call(rt: Runtime, job_id: str, owner: str, image: bytes, mime: str,
          options: RemoveBackgroundOptions, on_submitted: PipeHook | None) -> SubmitOutcome:
    # From the recorded start of the call to its recorded TaskUID, a stop signal waits: a
    # process stopped in between would leave a paid call without its answer. The start's
    # durable write and the signing happen while the token's start comes; the request leaves
    # at it (before_send), right after it is marked sent: a process killed before that mark
    # never sent its request, and the job is claimed again instead of flagged.
    with stop_signals_deferred(), rt.limiter.call(TOKEN_WAIT_S, leave=False) as grant:
        if not begin_call(rt.ledger, job_id, owner, rt.durability):
            # Our lease ran out while this process stalled and another attempt took the job.
            return SubmitOutcome(job_id, retry_in_s=LOST_CLAIM_RECHECK_S)
        failpoint(rt.settings, rt.redis, "after_call_started")
        try:
            answer = rt.client.remove_background(
                image, mime, options, request_uuid=job_id,
                before_send=lambda: grant.leave(then=_marking_sent(rt, job_id, owner)))
        except ClaimLost:
            return SubmitOutcome(job_id, retry_in_s=LOST_CLAIM_RECHECK_S)
        except Throttled as exc:
            rt.limiter.throttled(exc.retry_after_s)
            _release(rt, job_id, owner)
            raise
        except RetryableError as exc:
            return _call_failed(rt, job_id, owner, exc)
        except PermanentError as exc:
            _fail(rt, job_id, owner, "submit", exc)
            return SubmitOutcome(job_id, state=JobState.FAILED)
        failpoint(rt.settings, rt.redis, "before_task_uid_write")
        # Written at once: the TaskUID is the only proof this job was paid for. The limiter's
        # slot is freed in the same round trip.
        def also(pipe: Pipeline) -> None:
            rt.limiter.release_into(grant, pipe)
            if on_submitted is not None:
                on_submitted(pipe)

        done, _ = _record_task_uid(rt, job_id, answer.task_uid, {"lease_owner": owner}, also)
        if not done:
            log.warning("job %s: the API accepted it as task %s, but the job was taken over "
                        "meanwhile; record it with `cutout reconcile --attach %s %s`",
                        job_id, answer.task_uid, job_id, answer.task_uid)
    failpoint(rt.settings, rt.redis, "after_task_uid_write")
    return SubmitOutcome(job_id, task_uid=answer.task_uid,
                         state=JobState.SUBMITTED if done else None)


def _marking_sent(rt: Runtime, job_id: str, owner: str) -> Callable[[], None]:
    """The last step before the request leaves: mark it sent (ClaimLost: send nothing)."""
    def mark() -> None:
        mark_sent(rt.ledger, job_id, owner)
        failpoint(rt.settings, rt.redis, "after_sent_mark")
    return mark


def _call_failed(rt: Runtime, job_id: str, owner: str, exc: RetryableError) -> SubmitOutcome:
    if exc.maybe_accepted:
        _needs_reconciliation(rt, job_id, owner, f"{exc.code}: {exc.message}")
        return SubmitOutcome(job_id, state=JobState.NEEDS_RECONCILIATION)
    _release(rt, job_id, owner)
    raise exc


def persist_job(rt: Runtime, job_id: str, task_uid: str,
                also: PipeHook | None = None) -> JobState | None:
    """SUBMITTED for a TaskUID recorded without it (by an earlier version, or attached by
    `cutout reconcile`). Only for the TaskUID the job holds: a stale message from an earlier
    attempt changes nothing, and a repeat finds the job SUBMITTED already and emits nothing.
    `also` queues more commands in the same round trip (the poll loop's start)."""
    _, state = _record_task_uid(rt, job_id, task_uid, {"task_uid": task_uid}, also)
    return state


def _record_task_uid(rt: Runtime, job_id: str, task_uid: str, expect: dict[str, str],
                     also: PipeHook | None) -> tuple[bool, JobState | None]:
    """The TaskUID on the job, SUBMITTED, the job.submitted event and a poll time, in one step
    (if the job still holds `expect`)."""
    done, state = rt.ledger.transition(
        job_id, [JobState.SUBMITTING, JobState.NEEDS_RECONCILIATION], JobState.SUBMITTED,
        fields={"task_uid": task_uid, "submitted_at": "__now__"},
        clear=["lease_until", "lease_owner", *ERROR_FIELDS, "finished_at"],
        event="job.submitted", event_fields={"task_uid": task_uid},
        poll_in_s=rt.settings.poll_interval_s, expect=expect, also=also)
    if done:
        log.info("job %s submitted as task %s", job_id, task_uid)
    return done, state


def give_up(rt: Runtime, job_id: str, stage: str, exc: RetryableError, retries: int) -> None:
    """The last retry failed too: the job fails with the last error. Only from ACCEPTED: the
    claim was handed back before the error got here, and a job that another message has taken
    since (or submitted, and so paid for) is not this message's to fail."""
    message = f"gave up after {retries} retries: {exc.message}"
    if rt.ledger.fail(job_id, [JobState.ACCEPTED], stage, exc.code, message, field=exc.field):
        log.info("job %s failed at %s: %s", job_id, stage, message)


def _release(rt: Runtime, job_id: str, owner: str) -> None:
    """Hand the claim back: the API did not take the call, a later attempt may."""
    rt.ledger.transition(job_id, [JobState.SUBMITTING], JobState.ACCEPTED,
                         clear=["lease_until", "lease_owner", "call_started_at", "call_run_id",
                                "call_sent_at"],
                         expect={"lease_owner": owner})


def _fail(rt: Runtime, job_id: str, owner: str, stage: str, exc: PermanentError) -> None:
    code = "invalid_input" if isinstance(exc, InvalidInput) else exc.code
    if rt.ledger.fail(job_id, [JobState.SUBMITTING], stage, code, exc.message,
                      field=exc.field, expect={"lease_owner": owner}):
        log.info("job %s failed at %s: %s", job_id, stage, exc)


def _needs_reconciliation(rt: Runtime, job_id: str, owner: str | None, why: str) -> None:
    expect = {"lease_owner": owner} if owner else None
    if rt.ledger.fail(job_id, [JobState.SUBMITTING], "submit", "unknown_outcome",
                      f"the API may have accepted the call: {why}",
                      to=JobState.NEEDS_RECONCILIATION, expect=expect):
        log.warning("job %s needs reconciliation: %s", job_id, why)
