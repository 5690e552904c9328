"""The Python API other services use to enqueue images and follow their jobs.

Every job is recorded in the ledger (ACCEPTED) before its message is published, so a job id
handed out always has a record. The message is the chain `cutout.submit` -> `cutout.persist`
whose first task id is the job id.
"""

from __future__ import annotations

import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterable
from functools import lru_cache
from typing import Any

from celery import Celery

from config import Settings, get_settings
from picpik.errors import InvalidInput
from picpik.models import parse_options
from tasks.celery_app import create_app
from tasks.messages import send_jobs
from tasks.outputs.webhooks import check_webhook_url
from tasks.poll import ensure_poll_loop
from tasks.store.ledger import ERROR_FIELDS, Ledger
from tasks.store.records import TERMINAL_STATES, JobRecord, JobState
from tasks.store.schedule import TickMarker

__all__ = [
    "TERMINAL_STATES",
    "JobRecord",
    "JobState",
    "batch_counts",
    "batch_jobs",
    "enqueue",
    "enqueue_many",
    "get_job",
    "retry_failed",
    "wait",
]

WAIT_POLL_S = 0.25
RESULTS_KEPT_S = 23 * 3600  # the API keeps results 24 h; an hour to spare


def enqueue(
    reference: str,
    *,
    batch: str | None = None,
    output_dir: str | None = None,
    settings: Settings | None = None,
    webhook_url: str | None = None,
    **options: Any,
) -> str:
    """Queue one image reference; return its job id. Raises InvalidInput naming a bad option."""
    return enqueue_many([reference], batch=batch, output_dir=output_dir, settings=settings,
                        webhook_url=webhook_url, **options)[0]


def enqueue_many(
    references: Iterable[str],
    *,
    batch: str | None = None,
    output_dir: str | None = None,
    settings: Settings | None = None,
    webhook_url: str | None = None,
    **options: Any,
) -> list[str]:
    """Validate the options once, then queue every reference in bulk (one connection, one
    pipelined ledger write); return the job ids in the order of the references.

    Options go by API name (Box=...) or Python name (box=...). With webhook_url, each job's
    end (job.succeeded, job.failed, job.needs_reconciliation) is POSTed there, signed."""
    s = settings or get_settings()
    params = parse_options(options).to_params()
    refs = list(references)
    for ref in refs:
        if not isinstance(ref, str) or not ref.strip():
            raise InvalidInput(f"must be a non-empty string, got {ref!r}", field="reference")
    if batch is not None and (not batch or ":" in batch):
        raise InvalidInput(f"must be a non-empty name without ':', got {batch!r}", field="batch")
    if webhook_url is not None:
        check_webhook_url(webhook_url)
    jobs = [(str(uuid.uuid4()), ref) for ref in refs]
    _ledger(s).create_many(jobs, params, batch=batch, output_dir=output_dir,
                           webhook_url=webhook_url)
    _publish(s, jobs)
    return [job_id for job_id, _ in jobs]


def get_job(job_id: str, settings: Settings | None = None) -> JobRecord | None:
    """The ledger's record of a job, or None if no such job exists."""
    return _ledger(settings or get_settings()).get(job_id)


def wait(
    job_ids: Iterable[str],
    *,
    timeout_s: float | None = None,
    on_progress: Callable[[dict[str, int]], None] | None = None,
    settings: Settings | None = None,
) -> dict[str, JobRecord]:
    """Block until every job is terminal (SUCCEEDED, FAILED or NEEDS_RECONCILIATION) or
    timeout_s passes; return their latest records (check `.terminal` after a timeout).

    on_progress is called with counts by state name whenever they change. Raises InvalidInput
    for an id the ledger does not know."""
    ledger = _ledger(settings or get_settings())
    ids = list(dict.fromkeys(job_ids))
    deadline = None if timeout_s is None else time.monotonic() + timeout_s
    latest = _read(ledger, ids)
    last: dict[str, int] | None = None
    while True:
        counts = dict(Counter(str(r.state) for r in latest.values()))
        if on_progress is not None and counts != last:
            on_progress(counts)
        last = counts
        open_ids = [i for i, r in latest.items() if not r.terminal]
        if not open_ids or (deadline is not None and time.monotonic() >= deadline):
            return latest
        time.sleep(WAIT_POLL_S)
        latest.update(_read(ledger, open_ids))


def batch_counts(batch: str, settings: Settings | None = None) -> dict[str, int]:
    """Counts of a batch's jobs by state name (states with no job are left out)."""
    return _ledger(settings or get_settings()).batch_counts(batch)


def batch_jobs(batch: str, settings: Settings | None = None) -> list[JobRecord]:
    """Every job of a batch, oldest first."""
    ledger = _ledger(settings or get_settings())
    records = [r for r in ledger.get_many(ledger.batch_ids(batch)) if r is not None]
    return sorted(records, key=lambda r: (r.created_at or 0.0, r.job_id))


# Fields of one attempt, cleared when a job starts over.
_ATTEMPT_FIELDS = ("finished_at", "task_uid", "call_started_at", "lease_until", "lease_owner",
                   "submitted_at", "polls", "poll_errors", "poll_cap", "result_paths",
                   "result_urls", "collect_attempts", "api_finished_at")


def retry_failed(batch: str, settings: Settings | None = None) -> list[str]:
    """Take the batch's FAILED jobs up again under their own ids; return their ids.

    A job whose task finished at the API but whose results could not be collected is polled
    and collected again, without a second call, while the API keeps results (24 h). Any other
    failed job is submitted, and paid for, again."""
    s = settings or get_settings()
    ledger = _ledger(s)
    again, recollected = [], []
    for record in batch_jobs(batch, s):
        if record.state is not JobState.FAILED:
            continue
        if _collectable(record) and _recollect(ledger, record, s):
            recollected.append(record.job_id)
        elif _start_over(ledger, record):
            again.append((record.job_id, record.reference))
    _publish(s, again)
    if recollected:
        ensure_poll_loop(s, TickMarker(ledger.redis))
    return [job_id for job_id, _ in again] + recollected


def _collectable(record: JobRecord) -> bool:
    """Failed at collect, with a TaskUID whose results the API still keeps."""
    finished = record.api_finished_at or record.finished_at or 0.0
    return (record.error_stage == "collect" and bool(record.task_uid)
            and time.time() - finished < RESULTS_KEPT_S)


def _recollect(ledger: Ledger, record: JobRecord, settings: Settings) -> bool:
    done, _ = ledger.transition(
        record.job_id, [JobState.FAILED], JobState.SUBMITTED,
        clear=[*ERROR_FIELDS, "finished_at", "result_urls", "collect_attempts", "poll_errors",
               "poll_cap"],
        poll_in_s=0.0, expect={"task_uid": record.task_uid})
    return done


def _start_over(ledger: Ledger, record: JobRecord) -> bool:
    done, _ = ledger.transition(record.job_id, [JobState.FAILED], JobState.ACCEPTED,
                                clear=[*ERROR_FIELDS, *_ATTEMPT_FIELDS])
    return done


def _read(ledger: Ledger, ids: list[str]) -> dict[str, JobRecord]:
    records = ledger.get_many(ids)
    missing = [i for i, r in zip(ids, records, strict=True) if r is None]
    if missing:
        raise InvalidInput(f"no such job: {missing[0]}", field="job_id")
    return {r.job_id: r for r in records if r is not None}


def _publish(settings: Settings, jobs: list[tuple[str, str]]) -> None:
    """One connection for the whole list; each message is the submit -> persist chain."""
    if not jobs:
        return
    app = _producer_app(settings)
    with app.connection_for_write() as conn:
        send_jobs(app, jobs, app.amqp.Producer(conn))


@lru_cache(maxsize=8)
def _producer_app(settings: Settings) -> Celery:
    return create_app(settings, main="cutout-producer", current=False)


@lru_cache(maxsize=8)
def _ledger(settings: Settings) -> Ledger:
    return Ledger.from_url(settings.redis_url)
