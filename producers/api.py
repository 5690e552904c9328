"""The Python API other services use to enqueue images and follow their jobs.

Every job is recorded in the ledger (ACCEPTED) before its message is published, so a job id
handed out always has a record. The message is the chain `cutout.submit` -> `cutout.persist`
whose first task id is the job id.
"""

from __future__ import annotations

import re
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from functools import lru_cache
from typing import Any

from celery import Celery
from kombu import Producer
from kombu.exceptions import OperationalError

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
    "ATTEMPT_FIELDS",
    "TERMINAL_STATES",
    "JobRecord",
    "JobState",
    "batch_counts",
    "batch_jobs",
    "derive_job_ids",
    "enqueue",
    "enqueue_many",
    "get_job",
    "publish",
    "retry_failed",
    "wait",
]

WAIT_POLL_S = 0.25
# Job ids derived from an idempotency key: uuid5 in cutout's own namespace.
_KEY_NAMESPACE = uuid.uuid5(uuid.NAMESPACE_URL, "https://cutout.local/job-id")
_JOB_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._:-]{0,127}")
RESULTS_KEPT_S = 23 * 3600  # the API keeps results 24 h; an hour to spare
ENQUEUE_CHUNK = 1000  # jobs recorded in one round trip, then published, by enqueue_many


def enqueue(
    reference: str,
    *,
    batch: str | None = None,
    output_dir: str | None = None,
    job_id: str | None = None,
    idempotency_key: str | None = None,
    settings: Settings | None = None,
    webhook_url: str | None = None,
    force: bool = False,
    **options: Any,
) -> str:
    """Queue one image reference; return its job id. Raises InvalidInput naming a bad option.
    `job_id` or `idempotency_key` make a repeat a no-op (see enqueue_many)."""
    return enqueue_many([reference], batch=batch, output_dir=output_dir,
                        job_ids=None if job_id is None else [job_id],
                        idempotency_key=idempotency_key, settings=settings,
                        webhook_url=webhook_url, force=force, **options)[0]


def enqueue_many(
    references: Iterable[str],
    *,
    batch: str | None = None,
    output_dir: str | None = None,
    job_ids: Sequence[str] | None = None,
    idempotency_key: str | None = None,
    settings: Settings | None = None,
    webhook_url: str | None = None,
    force: bool = False,
    **options: Any,
) -> list[str]:
    """Validate the options once, then queue every reference in bulk (one connection, one
    pipelined ledger write); return the job ids in the order of the references.

    Options go by API name (Box=...) or Python name (box=...). With webhook_url, each job's
    end (job.succeeded, job.failed, job.needs_reconciliation) is POSTed there, signed.
    An image already cut out with the same options is not paid for again (its files are
    copied, docs/costs.md) unless `force` is True.

    Pass your own `job_ids` (one per reference) or an `idempotency_key` (the ids are then
    derived from it, uuid5) to make a repeat safe: jobs that exist already are not recorded
    again, only those still ACCEPTED are published again (a duplicate message costs nothing:
    the claim), and the same ids come back. A key or id reused for another reference, options,
    batch, output_dir or webhook_url is refused."""
    s = settings or get_settings()
    params = parse_options(options).to_params()
    refs = list(references)
    _check_references(refs, batch)
    if webhook_url is not None:
        check_webhook_url(webhook_url)
    ids = _job_ids_for(refs, job_ids, idempotency_key)
    jobs = list(zip(ids, refs, strict=True))
    ledger = _ledger(s)
    where: dict[str, Any] = {"batch": batch, "output_dir": output_dir,
                             "webhook_url": webhook_url, "force": force}
    if job_ids is None and idempotency_key is None:
        _record_and_publish(s, ledger, jobs, params, where)
        return ids
    existing = {r.job_id: r for r in ledger.get_many(ids) if r is not None}
    field = "job_ids" if job_ids is not None else "idempotency_key"
    for job_id, ref in jobs:
        if job_id in existing:
            _check_repeat(existing[job_id], ref, params, where, field)
    fresh = [(job_id, ref) for job_id, ref in jobs if job_id not in existing]
    # Jobs still ACCEPTED may never have been published (a producer that died in between).
    again = [(r.job_id, r.reference) for r in existing.values() if r.state is JobState.ACCEPTED]
    _record_and_publish(s, ledger, fresh, params, where, again)
    return ids


def _record_and_publish(settings: Settings, ledger: Ledger, jobs: list[tuple[str, str]],
                        params: dict[str, Any], where: dict[str, Any],
                        again: list[tuple[str, str]] | None = None) -> None:
    """Record the jobs and publish their messages, a chunk at a time over one connection: one
    round trip per chunk for the records, and a producer that dies in between leaves at most
    one chunk recorded without its messages (the sweeper publishes those again)."""
    with _producer(settings) as (app, producer):
        for start in range(0, len(jobs), ENQUEUE_CHUNK):
            chunk = jobs[start:start + ENQUEUE_CHUNK]
            ledger.create_many(chunk, params, **where)
            send_jobs(app, chunk, producer)
        if again:
            send_jobs(app, again, producer)


def derive_job_ids(idempotency_key: str, count: int) -> list[str]:
    """The job ids an idempotency key stands for: uuid5 of the key and each position."""
    return [str(uuid.uuid5(_KEY_NAMESPACE, f"{idempotency_key}/{i}")) for i in range(count)]


def _check_references(refs: list[str], batch: str | None) -> None:
    for ref in refs:
        if not isinstance(ref, str) or not ref.strip():
            raise InvalidInput(f"must be a non-empty string, got {ref!r}", field="reference")
    if batch is not None and (not batch or ":" in batch):
        raise InvalidInput(f"must be a non-empty name without ':', got {batch!r}", field="batch")


def _job_ids_for(refs: list[str], job_ids: Sequence[str] | None,
                 idempotency_key: str | None) -> list[str]:
    if job_ids is not None and idempotency_key is not None:
        raise InvalidInput("give job_ids or idempotency_key, not both", field="idempotency_key")
    if idempotency_key is not None:
        if not isinstance(idempotency_key, str) or not idempotency_key.strip():
            raise InvalidInput("must be a non-empty string", field="idempotency_key")
        return derive_job_ids(idempotency_key, len(refs))
    if job_ids is None:
        return [str(uuid.uuid4()) for _ in refs]
    ids = list(job_ids)
    if len(ids) != len(refs):
        raise InvalidInput(f"{len(ids)} ids for {len(refs)} references", field="job_ids")
    if len(set(ids)) != len(ids):
        raise InvalidInput("the same id is given twice", field="job_ids")
    for job_id in ids:
        if not isinstance(job_id, str) or not _JOB_ID.fullmatch(job_id):
            raise InvalidInput(f"{job_id!r} is not a job id (1-128 of A-Z a-z 0-9 . _ : -, "
                               "starting with a letter or digit)", field="job_ids")
    return ids


def _check_repeat(record: JobRecord, reference: str, params: dict[str, Any],
                  where: dict[str, Any], field: str) -> None:
    """A repeat must ask for the very same job; anything else is a reused key or id."""
    differs = [name for name, mine, theirs in (
        ("reference", reference, record.reference), ("options", params, record.options),
        *((name, value or None, getattr(record, name) or None) for name, value in where.items()),
    ) if mine != theirs]
    if differs:
        raise InvalidInput(f"job {record.job_id} already exists with another "
                           f"{' and '.join(differs)} (the {field} stand for other jobs); "
                           "nothing was queued", field=field)


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
    ON_HOLD (over a credit budget: it waits for `cutout budget`), or timeout_s passes; return
    their latest records (check `.terminal` / `.settled` after a timeout).

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
        open_ids = [i for i, r in latest.items() if not r.settled]
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
ATTEMPT_FIELDS = ("finished_at", "task_uid", "call_started_at", "call_run_id", "call_sent_at",
                   "lease_until", "lease_owner", "submitted_at", "polls", "poll_errors", "poll_cap",
                   "result_paths", "result_urls", "collect_attempts", "api_finished_at")


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
    publish(s, again)
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
                                clear=[*ERROR_FIELDS, *ATTEMPT_FIELDS])
    return done


def _read(ledger: Ledger, ids: list[str]) -> dict[str, JobRecord]:
    records = ledger.get_many(ids)
    missing = [i for i, r in zip(ids, records, strict=True) if r is None]
    if missing:
        raise InvalidInput(f"no such job: {missing[0]}", field="job_id")
    return {r.job_id: r for r in records if r is not None}


def publish(settings: Settings, jobs: list[tuple[str, str]]) -> None:
    """One connection for the whole list; each message is the submit -> persist chain."""
    if not jobs:
        return
    with _producer(settings) as (app, producer):
        send_jobs(app, jobs, producer)


@contextmanager
def _producer(settings: Settings) -> Iterator[tuple[Celery, Producer]]:
    """One broker connection and its producer for everything published in the block."""
    app = _producer_app(settings)
    with app.connection_for_write() as conn:
        refused = conn.connection_errors + conn.channel_errors
        try:
            yield app, app.amqp.Producer(conn)
        except refused as exc:
            # e.g. RabbitMQ refusing the login or the vhost: one kind of error for callers,
            # as kombu already gives for a broker out of reach.
            raise OperationalError(f"the broker refused the connection: {exc}") from exc


@lru_cache(maxsize=8)
def _producer_app(settings: Settings) -> Celery:
    return create_app(settings, main="cutout-producer", current=False)


@lru_cache(maxsize=8)
def _ledger(settings: Settings) -> Ledger:
    return Ledger.from_url(settings.redis_url)
