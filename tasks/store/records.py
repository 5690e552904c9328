"""The job record: what the ledger stores for each job, as callers read it."""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

__all__ = ["SETTLED_STATES", "TERMINAL_STATES", "JobRecord", "JobState"]


class JobState(StrEnum):
    """Where a job is on its way through the pipeline."""

    ACCEPTED = "ACCEPTED"
    SUBMITTING = "SUBMITTING"
    SUBMITTED = "SUBMITTED"
    SUCCEEDED = "SUCCEEDED"
    FAILED = "FAILED"
    # A crash or timeout left it unknown whether the API accepted (and billed) the call.
    NEEDS_RECONCILIATION = "NEEDS_RECONCILIATION"
    # Its call would pass a credit budget: parked, unpaid, until a budget has room again
    # (`cutout budget`, or a new UTC day); then it goes on by itself.
    ON_HOLD = "ON_HOLD"


# States a job does not leave by itself (NEEDS_RECONCILIATION waits for a reconciler or a human).
TERMINAL_STATES = frozenset({JobState.SUCCEEDED, JobState.FAILED, JobState.NEEDS_RECONCILIATION})
# States that do not move until something outside the pipeline changes: what wait() waits for.
SETTLED_STATES = TERMINAL_STATES | {JobState.ON_HOLD}


def _float(raw: Mapping[str, str], name: str) -> float | None:
    value = raw.get(name)
    return float(value) if value not in (None, "") else None


@dataclass(frozen=True)
class JobRecord:
    """One job as the ledger holds it. Times are unix seconds; options use the API's names."""

    job_id: str
    reference: str
    options: dict[str, Any] = field(default_factory=dict)
    batch: str | None = None
    output_dir: str | None = None
    state: JobState = JobState.ACCEPTED
    attempts: int = 0
    task_uid: str | None = None
    result_paths: list[str] = field(default_factory=list)
    error_stage: str | None = None
    error_code: str | None = None
    error_field: str | None = None
    error_message: str | None = None
    credits: float | None = None
    created_at: float | None = None
    submitted_at: float | None = None
    finished_at: float | None = None
    updated_at: float | None = None
    lease_until: float | None = None
    lease_owner: str | None = None
    call_started_at: float | None = None
    polls: int = 0
    # Poll failures in a row, and the largest batch this job may be asked about in (halved
    # on each failure, so one entry that breaks the answer is soon asked about alone).
    poll_errors: int = 0
    poll_cap: int | None = None
    # The finished task's result URLs, once the API reported them, and collect attempts.
    result_urls: list[str] = field(default_factory=list)
    collect_attempts: int = 0
    api_finished_at: float | None = None  # when a poll first saw the task finished
    # Where job.succeeded / job.failed / job.needs_reconciliation are POSTed (Standard
    # Webhooks), and every delivery attempt so far, oldest first.
    webhook_url: str | None = None
    webhook_attempts: list[dict[str, Any]] = field(default_factory=list)
    # Cost controls: pay even for a cutout made before (no reuse), and the job whose cutout
    # this one reused instead of calling the API.
    force: bool = False
    reused_from: str | None = None
    hold_reason: str | None = None  # ON_HOLD: which budget (daily | batch) has no room

    @property
    def terminal(self) -> bool:
        return self.state in TERMINAL_STATES

    @property
    def settled(self) -> bool:
        """Terminal, or ON_HOLD: nothing changes until a person (or a new day) does."""
        return self.state in SETTLED_STATES

    @classmethod
    def from_hash(cls, raw: Mapping[str, str]) -> JobRecord:
        """Build a record from the ledger's Redis hash (all values are strings there)."""
        return cls(
            job_id=raw["job_id"],
            reference=raw.get("reference", ""),
            options=json.loads(raw.get("options") or "{}"),
            batch=raw.get("batch") or None,
            output_dir=raw.get("output_dir") or None,
            state=JobState(raw.get("state", JobState.ACCEPTED)),
            attempts=int(raw.get("attempts") or 0),
            task_uid=raw.get("task_uid") or None,
            result_paths=json.loads(raw.get("result_paths") or "[]"),
            error_stage=raw.get("error_stage") or None,
            error_code=raw.get("error_code") or None,
            error_field=raw.get("error_field") or None,
            error_message=raw.get("error_message") or None,
            credits=_float(raw, "credits"),
            created_at=_float(raw, "created_at"),
            submitted_at=_float(raw, "submitted_at"),
            finished_at=_float(raw, "finished_at"),
            updated_at=_float(raw, "updated_at"),
            lease_until=_float(raw, "lease_until"),
            lease_owner=raw.get("lease_owner") or None,
            call_started_at=_float(raw, "call_started_at"),
            polls=int(raw.get("polls") or 0),
            poll_errors=int(raw.get("poll_errors") or 0),
            poll_cap=int(raw["poll_cap"]) if raw.get("poll_cap") else None,
            result_urls=json.loads(raw.get("result_urls") or "[]"),
            collect_attempts=int(raw.get("collect_attempts") or 0),
            api_finished_at=_float(raw, "api_finished_at"),
            webhook_url=raw.get("webhook_url") or None,
            webhook_attempts=json.loads(raw.get("webhook_attempts") or "[]"),
            force=raw.get("force") == "1",
            reused_from=raw.get("reused_from") or None,
            hold_reason=raw.get("hold_reason") or None,
        )

    def to_dict(self) -> dict[str, Any]:
        """A JSON-friendly view (for the CLI's --json output and events)."""
        out = {name: getattr(self, name) for name in self.__dataclass_fields__}
        out["state"] = str(self.state)
        return out
