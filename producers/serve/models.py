"""The request and response bodies of `cutout serve`: what its OpenAPI document describes."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, StrictBool

from tasks.store.records import JobRecord, JobState

__all__ = ["BatchPage", "Health", "Job", "JobRef", "JobsAccepted", "JobsRequest", "Problem",
           "Refusal", "WebhookAttempt"]

State = Literal["ACCEPTED", "SUBMITTING", "SUBMITTED", "SUCCEEDED", "FAILED",
                "NEEDS_RECONCILIATION", "ON_HOLD"]
MAX_TEXT = 2048


class JobsRequest(BaseModel):
    """Images to cut out, with the options and the callback they share."""

    model_config = ConfigDict(extra="forbid", json_schema_extra={"examples": [{
        "references": ["https://images.example.com/a.jpg", "shoot-42/b.png"],
        "batch": "shoot-42", "options": {"ErodeSize": 10, "OnlyMask": False},
        "webhook_url": "https://hooks.example.com/cutout"}]})

    references: list[str] = Field(
        min_length=1, description="http(s) URLs (checked by the address guard) or paths below "
        "CUTOUT_FILES_ROOT (relative ones are taken from there)")
    batch: str | None = Field(None, min_length=1, max_length=200, pattern=r"^[^:]+$",
                              description="the batch name (default: a new one)")
    output_dir: str | None = Field(None, min_length=1, max_length=MAX_TEXT,
                                   description="a folder below the workers' CUTOUT_OUTPUT_DIR")
    options: dict[str, Any] = Field(
        default_factory=dict, description="RemoveBackground options by API name (ErodeSize) "
        "or snake-case name (erode_size)")
    webhook_url: str | None = Field(None, max_length=MAX_TEXT,
                                    description="where each finished job's event is POSTed")
    force: StrictBool = Field(False, description="pay for every image even when the same cutout "
                        "(same bytes, same options) was made before (docs/costs.md)")


class JobRef(BaseModel):
    id: str
    reference: str
    state: State


class JobsAccepted(BaseModel):
    batch: str
    jobs: list[JobRef]


class WebhookAttempt(BaseModel):
    webhook_id: str
    event: str
    attempt: int
    at: float
    status: int | None = None
    error: str | None = None
    outcome: Literal["delivered", "retrying", "undelivered"]
    next_at: float | None = None


class Job(BaseModel):
    """A job's ledger record (times are unix seconds)."""

    # A field the ledger gains later is passed through rather than dropped.
    model_config = ConfigDict(extra="allow")

    job_id: str
    reference: str
    options: dict[str, Any]
    batch: str | None
    output_dir: str | None
    state: State
    attempts: int
    task_uid: str | None
    result_paths: list[str]
    error_stage: str | None
    error_code: str | None
    error_field: str | None
    error_message: str | None
    credits: float | None
    created_at: float | None
    submitted_at: float | None
    finished_at: float | None
    updated_at: float | None
    lease_until: float | None
    polls: int
    webhook_url: str | None
    webhook_attempts: list[WebhookAttempt]

    @classmethod
    def of(cls, record: JobRecord) -> Job:
        return cls.model_validate(record.to_dict())


class BatchPage(BaseModel):
    batch: str
    counts: dict[State, int]
    total: int
    offset: int
    limit: int
    next_offset: int | None = Field(description="the offset of the next page; null on the last")
    jobs: list[Job]


class Health(BaseModel):
    redis: bool
    broker: bool


class Refusal(BaseModel):
    field: str | None
    reference: str | None = None
    message: str


class Problem(BaseModel):
    """An error (RFC 9457 problem details); `errors` names each field (and reference) refused."""

    type: str = "about:blank"
    title: str
    status: int
    detail: str
    errors: list[Refusal] = Field(default_factory=list)


STATES: tuple[str, ...] = tuple(str(s) for s in JobState)
