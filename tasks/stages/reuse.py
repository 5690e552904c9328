"""Never pay twice for the same cutout: the submit stage's gate before a call.

A job whose image bytes and options match a job that SUCCEEDED gets a copy of that job's
files (named after its own reference, by the output store's safe naming) and ends SUCCEEDED
with `reused_from`; one whose twin is still on its way hands its claim back and looks again
later; otherwise it owns the content key and pays. `force` skips all of it.
"""

from __future__ import annotations

import logging
from enum import Enum
from pathlib import Path

from picpik.models import RemoveBackgroundOptions
from tasks.inputs.fetch import reference_name
from tasks.outputs.storage import output_names
from tasks.stages.runtime import Runtime
from tasks.store.dedupe import content_key
from tasks.store.records import JobRecord, JobState

__all__ = ["Gate", "dedupe_gate"]

log = logging.getLogger(__name__)


class Gate(Enum):
    PAY = "pay"  # call the API
    WAIT = "wait"  # the twin is in flight: the claim was handed back, look again later
    REUSED = "reused"  # the job SUCCEEDED with the twin's files


def dedupe_gate(rt: Runtime, record: JobRecord, owner: str, image: bytes,
                options: RemoveBackgroundOptions) -> Gate:
    """What the claimed job (claim `owner`) does instead of paying, if anything."""
    if record.force:
        return Gate.PAY
    key = content_key(image, options.to_params())
    match = rt.dedupe.check(key, record.job_id)
    if match.verdict == "pay":
        return Gate.PAY
    if match.verdict == "reuse":
        if _reuse(rt, record, owner, match.owner):
            return Gate.REUSED
        if rt.dedupe.take_over(key, match.owner, record.job_id):
            return Gate.PAY  # the twin's files are gone: this job pays in its place
    _hand_back(rt, record.job_id, owner)
    return Gate.WAIT


def _reuse(rt: Runtime, record: JobRecord, owner: str, source_id: str) -> bool:
    """Copy the source job's files into this job's folder and end it SUCCEEDED; False when
    the source's files are no longer all there."""
    source = rt.ledger.get(source_id)
    if source is None or not source.result_paths:
        return False
    try:
        images = [Path(path).read_bytes() for path in source.result_paths]
    except FileNotFoundError:
        return False
    names = output_names(reference_name(record.reference) or record.job_id, len(images),
                         only_mask=bool(record.options.get("OnlyMask")))
    directory = Path(record.output_dir) if record.output_dir else rt.settings.output_dir
    paths = rt.store.save(directory, record.job_id, names, images)
    done, _ = rt.ledger.transition(
        record.job_id, [JobState.SUBMITTING], JobState.SUCCEEDED,
        fields={"result_paths": paths, "reused_from": source_id, "credits": 0,
                "finished_at": "__now__"},
        clear=["lease_until", "lease_owner"], event="job.succeeded",
        event_fields={"result_paths": paths, "reused_from": source_id, "credits": 0},
        unschedule=True, expect={"lease_owner": owner})
    if done:
        log.info("job %s succeeded with the cutout of job %s (no call)", record.job_id,
                 source_id)
    return True


def _hand_back(rt: Runtime, job_id: str, owner: str) -> None:
    """The claim goes back (ACCEPTED): the job waits for its twin without holding a lease."""
    rt.ledger.transition(job_id, [JobState.SUBMITTING], JobState.ACCEPTED,
                         clear=["lease_until", "lease_owner", "call_started_at"],
                         expect={"lease_owner": owner})
