"""The submit stage without Celery: claim, fetch, check, take a token, call RemoveBackground.

Returns what the task must do next; raises RetryableError only when a later attempt may
succeed and the API certainly did not take the call.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass

from picpik.errors import InvalidInput, PermanentError, RetryableError, Throttled
from picpik.models import RemoveBackgroundOptions, parse_options
from tasks.inputs.intake import load_image
from tasks.limits.limiter import TokenWait
from tasks.stages.runtime import Runtime
from tasks.store.claims import claim
from tasks.store.ledger import ERROR_FIELDS
from tasks.store.records import JobRecord, JobState

__all__ = ["TOKEN_WAIT_S", "SubmitOutcome", "persist_job", "submit_job"]

log = logging.getLogger(__name__)

TOKEN_WAIT_S = 1.0  # longest in-task wait for a token; longer waits requeue the message
BUSY_RECHECK_S = 5.0  # a duplicate looks again this soon while another worker holds the job


@dataclass(frozen=True)
class SubmitOutcome:
    """task_uid: persist it. retry_in_s: look again later without counting a retry (the job
    waits for a token, or another worker holds it). Else: finished (state says how)."""

    job_id: str
    task_uid: str | None = None
    state: JobState | None = None
    retry_in_s: float | None = None
    waiting_for_token: bool = False


def submit_job(rt: Runtime, job_id: str) -> SubmitOutcome:
    try:
        # Only look: no token, no claim, no fetch while the limiter is booked up.
        rt.limiter.reserve(TOKEN_WAIT_S, take=False)
    except TokenWait as exc:
        return SubmitOutcome(job_id, retry_in_s=exc.retry_in_s, waiting_for_token=True)
    verdict = claim(rt.ledger, job_id, lease_s=rt.settings.task_time_limit_s)
    if verdict.verdict == "persist":
        return SubmitOutcome(job_id, task_uid=verdict.task_uid)
    if verdict.verdict == "busy":
        return SubmitOutcome(job_id, retry_in_s=min(verdict.busy_for_s + 0.1, BUSY_RECHECK_S))
    if verdict.verdict == "unknown":
        _needs_reconciliation(rt, job_id, "a submit attempt ended without a recorded answer")
        return SubmitOutcome(job_id, state=JobState.NEEDS_RECONCILIATION)
    if verdict.verdict != "claimed":
        return SubmitOutcome(job_id, state=verdict.state)
    record = rt.ledger.get(job_id)
    assert record is not None  # claimed just now
    return _attempt(rt, record)


def _attempt(rt: Runtime, record: JobRecord) -> SubmitOutcome:
    job_id = record.job_id
    try:
        image, mime, options = prepare(rt, record)
    except PermanentError as exc:
        _fail(rt, job_id, "fetch", exc)
        return SubmitOutcome(job_id, state=JobState.FAILED)
    except RetryableError:
        _release(rt, job_id)
        raise
    try:
        return _call(rt, job_id, image, mime, options)
    except TokenWait as exc:
        _release(rt, job_id)
        return SubmitOutcome(job_id, retry_in_s=exc.retry_in_s, waiting_for_token=True)


def prepare(rt: Runtime, record: JobRecord) -> tuple[bytes, str, RemoveBackgroundOptions]:
    """The image's bytes, MIME type and the checked options (the Box inside the image)."""
    options = parse_options(record.options)
    # Fetched, within the caps, decoded once, the Box inside it; errors name the reference.
    image, info = load_image(record.reference, rt.settings, options)
    return image, info.mime, options


def _call(rt: Runtime, job_id: str, image: bytes, mime: str,
          options: RemoveBackgroundOptions) -> SubmitOutcome:
    with rt.limiter.call(TOKEN_WAIT_S):
        # From here on the API may take the call: a crash now must not lead to a second one.
        rt.ledger.set_fields(job_id, call_started_at=f"{time.time():.6f}")
        try:
            answer = rt.client.remove_background(image, mime, options, request_uuid=job_id)
        except Throttled as exc:
            rt.limiter.throttled(exc.retry_after_s)
            _release(rt, job_id)
            raise
        except RetryableError as exc:
            if exc.maybe_accepted:
                _needs_reconciliation(rt, job_id, f"{exc.code}: {exc.message}")
                return SubmitOutcome(job_id, state=JobState.NEEDS_RECONCILIATION)
            _release(rt, job_id)
            raise
        except PermanentError as exc:
            _fail(rt, job_id, "submit", exc)
            return SubmitOutcome(job_id, state=JobState.FAILED)
    # Written at once: the TaskUID is the only proof this job was paid for.
    rt.ledger.set_fields(job_id, task_uid=answer.task_uid)
    return SubmitOutcome(job_id, task_uid=answer.task_uid)


def persist_job(rt: Runtime, job_id: str, task_uid: str) -> JobState | None:
    """SUBMITTED with its TaskUID, the job.submitted event and a poll time, in one step
    (a repeat finds the job SUBMITTED already and emits nothing)."""
    _, state = rt.ledger.transition(
        job_id, [JobState.SUBMITTING, JobState.NEEDS_RECONCILIATION], JobState.SUBMITTED,
        fields={"task_uid": task_uid, "submitted_at": "__now__"},
        clear=["lease_until", *ERROR_FIELDS, "finished_at"],
        event="job.submitted", event_fields={"task_uid": task_uid},
        poll_in_s=rt.settings.poll_interval_s)
    return state


def give_up(rt: Runtime, job_id: str, stage: str, exc: RetryableError, retries: int) -> None:
    """The last retry failed too: the job fails with the last error. Only from ACCEPTED: the
    claim was handed back before the error got here, and a job that another message has taken
    since (or submitted, and so paid for) is not this message's to fail."""
    message = f"gave up after {retries} retries: {exc.message}"
    rt.ledger.fail(job_id, [JobState.ACCEPTED], stage, exc.code, message, field=exc.field)


def _release(rt: Runtime, job_id: str) -> None:
    """Hand the claim back: the API did not take the call, a later attempt may."""
    rt.ledger.transition(job_id, [JobState.SUBMITTING], JobState.ACCEPTED,
                         clear=["lease_until", "call_started_at"])


def _fail(rt: Runtime, job_id: str, stage: str, exc: PermanentError) -> None:
    code = "invalid_input" if isinstance(exc, InvalidInput) else exc.code
    log.info("job %s failed at %s: %s", job_id, stage, exc)
    rt.ledger.fail(job_id, [JobState.SUBMITTING], stage, code, exc.message, field=exc.field)


def _needs_reconciliation(rt: Runtime, job_id: str, why: str) -> None:
    log.warning("job %s needs reconciliation: %s", job_id, why)
    rt.ledger.fail(job_id, [JobState.SUBMITTING], "submit", "unknown_outcome",
                   f"the API may have accepted the call: {why}",
                   to=JobState.NEEDS_RECONCILIATION)
