"""The collect stage without Celery: copy a finished task's result images out, record where,
SUCCEEDED. Run by the collector threads (`tasks/collector.py`) from the collect schedule.

A download or a write that fails for a reason that may pass (5xx, a timeout, a full disk)
is tried again with backoff, up to CUTOUT_MAX_RETRIES times; then, or at once for a reason
that cannot pass, the job fails at stage `collect`. Its TaskUID stays on the record, so
`cutout retry` collects it again without paying while the API still keeps the result.
"""

from __future__ import annotations

import logging
from pathlib import Path

from picpik.errors import CutoutError, PermanentError
from tasks.inputs.fetch import reference_name
from tasks.outputs.storage import output_names
from tasks.stages.backoff import retry_delay
from tasks.stages.runtime import Runtime
from tasks.store.ledger import job_key, record_of
from tasks.store.records import JobRecord, JobState

__all__ = ["RESULT_BYTES_FACTOR", "collect_claimed", "collect_due", "collect_due_or_wait",
           "collect_job", "collect_lease_s"]

log = logging.getLogger(__name__)

# A cutout is RGBA PNG: it may be several times the size of the JPEG it came from.
RESULT_BYTES_FACTOR = 8
# The fields of a job that collecting it reads (not its whole history).
FIELDS = ("reference", "options", "output_dir", "task_uid", "credits", "result_urls",
          "collect_attempts")


def collect_lease_s(rt: Runtime) -> float:
    """How long a collector holds a job: long enough for its downloads and writes."""
    s = rt.settings
    return max(60.0, 2 * (s.connect_timeout_s + s.read_timeout_s))


def collect_due(rt: Runtime, limit: int) -> list[str]:
    """Take up to `limit` jobs due for collection (each is this caller's for a lease)."""
    return rt.collect_schedule.claim_due(limit, collect_lease_s(rt))


def collect_due_or_wait(rt: Runtime, limit: int
                        ) -> tuple[list[tuple[str, JobRecord | None]], float | None]:
    """collect_due, each job with the fields collect_claimed needs read in the same call; when
    none is due, the seconds until one is (None: none waits)."""
    claimed, wait = rt.collect_schedule.claim_or_wait(
        limit, collect_lease_s(rt), job_key(""), ["job_id", "state", *FIELDS])
    return [(job_id, record_of(raw)) for job_id, raw in claimed], wait


def collect_job(rt: Runtime, job_id: str) -> JobState | None:
    """Download the job's results into its output directory; the job's state afterwards."""
    return collect_claimed(rt, job_id, rt.ledger.get_partial(job_id, FIELDS))


def collect_claimed(rt: Runtime, job_id: str, record: JobRecord | None) -> JobState | None:
    """collect_job for a job whose FIELDS (with job_id and state) were read as it was
    claimed (None: no such job)."""
    if record is None or record.state is not JobState.SUBMITTED or not record.result_urls:
        rt.collect_schedule.remove([job_id])  # done already, or not finished at the API
        return record.state if record else None
    try:
        paths = _save(rt, record)
    except PermanentError as exc:
        return _failed(rt, record, exc.code, exc.message, exc.field)
    except (CutoutError, OSError) as exc:
        return _try_again(rt, record, exc)
    _, state = rt.ledger.transition(
        job_id, [JobState.SUBMITTED], JobState.SUCCEEDED,
        fields={"result_paths": paths, "finished_at": "__now__"},
        event="job.succeeded",
        event_fields={"task_uid": record.task_uid, "result_paths": paths,
                      "credits": record.credits},
        unschedule=True, expect={"task_uid": record.task_uid})
    log.info("job %s succeeded: %s", job_id, ", ".join(paths))
    return state


def _save(rt: Runtime, record: JobRecord) -> list[str]:
    cap = rt.settings.max_image_bytes * RESULT_BYTES_FACTOR
    images = [rt.client.download(url, cap) for url in record.result_urls]
    names = output_names(reference_name(record.reference) or record.job_id, len(images),
                         only_mask=bool(record.options.get("OnlyMask")))
    directory = Path(record.output_dir) if record.output_dir else rt.settings.output_dir
    return rt.store.save(directory, record.job_id, names, images)


def _try_again(rt: Runtime, record: JobRecord, exc: Exception) -> JobState | None:
    attempts = record.collect_attempts + 1
    reason = exc.message if isinstance(exc, CutoutError) else f"cannot write the result: {exc}"
    if attempts > rt.settings.max_retries:
        return _failed(rt, record, getattr(exc, "code", "output_error"),
                       f"gave up after {attempts} attempts: {reason}", None)
    s = rt.settings
    delay = retry_delay(attempts - 1, s.retry_base_delay_s, s.retry_max_delay_s)
    # Retried by itself: information, not something to act on (the job's failure, if it comes
    # to that, is its own line).
    log.info("job %s: collect attempt %d failed (%s); again in %.1f s",
                record.job_id, attempts, reason, delay)
    _, state = rt.ledger.transition(
        record.job_id, [JobState.SUBMITTED], JobState.SUBMITTED, increment="collect_attempts",
        collect_in_s=delay, expect={"task_uid": record.task_uid})
    return state


def _failed(rt: Runtime, record: JobRecord, code: str, message: str,
            field: str | None) -> JobState | None:
    done = rt.ledger.fail(record.job_id, [JobState.SUBMITTED], "collect", code, message,
                          field=field, expect={"task_uid": record.task_uid})
    if done:
        log.info("job %s failed at collect: %s", record.job_id, message)
    return JobState.FAILED if done else None
