"""The collect stage without Celery: copy the result images out, record where, SUCCEEDED."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from picpik.errors import PermanentError
from tasks.inputs.fetch import reference_name
from tasks.outputs.storage import output_names
from tasks.stages.runtime import Runtime
from tasks.store.records import JobState

__all__ = ["RESULT_BYTES_FACTOR", "collect_failed", "collect_job"]

# A cutout is RGBA PNG: it may be several times the size of the JPEG it came from.
RESULT_BYTES_FACTOR = 8


def collect_job(rt: Runtime, job_id: str, urls: Sequence[str], credits: float) -> JobState | None:
    """Download every result URL into the output directory; the job's state afterwards."""
    record = rt.ledger.get(job_id)
    if record is None or record.state is not JobState.SUBMITTED:
        return record.state if record else None  # done already, or not ours to finish
    cap = rt.settings.max_image_bytes * RESULT_BYTES_FACTOR
    images = [rt.client.download(url, cap) for url in urls]
    names = output_names(reference_name(record.reference) or job_id, len(images),
                         only_mask=bool(record.options.get("OnlyMask")))
    directory = Path(record.output_dir) if record.output_dir else rt.settings.output_dir
    paths = rt.store.save(directory, job_id, names, images)
    _, state = rt.ledger.transition(
        job_id, [JobState.SUBMITTED], JobState.SUCCEEDED,
        fields={"result_paths": paths, "credits": credits, "finished_at": "__now__"},
        event="job.succeeded",
        event_fields={"task_uid": record.task_uid, "result_paths": paths, "credits": credits},
        unschedule=True)
    return state


def collect_failed(rt: Runtime, job_id: str, exc: PermanentError | None, message: str) -> None:
    code = exc.code if exc else "collect_failed"
    field = exc.field if exc else None
    rt.ledger.fail(job_id, [JobState.SUBMITTED], "collect", code, message, field=field)
