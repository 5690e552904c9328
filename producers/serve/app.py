"""The HTTP service of `cutout serve` (FastAPI): intake, status, health and metrics, with the
OpenAPI document FastAPI generates from the models (GET /openapi.json)."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

import redis
from fastapi import Depends, FastAPI, Header, Path, Query, Request, Response, Security
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from kombu import Connection
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from prometheus_client.registry import CollectorRegistry

from config import Settings
from producers.serve.auth import Tokens
from producers.serve.errors import NotFound, install_error_handlers
from producers.serve.idempotency import IdempotencyStore, Plan, fingerprint
from producers.serve.intake import Intake
from producers.serve.limits import BodyLimit
from producers.serve.metrics import registry_for
from producers.serve.models import (
    STATES,
    BatchPage,
    Health,
    Job,
    JobRef,
    JobsAccepted,
    JobsRequest,
    Problem,
)
from tasks.celery_app import create_app as create_celery_app
from tasks.store.ledger import Ledger

__all__ = ["create_app"]

log = logging.getLogger(__name__)

BROKER_TIMEOUT_S = 2.0
PROBLEMS: dict[int | str, dict[str, Any]] = {
    401: {"model": Problem, "description": "no valid token"},
    422: {"model": Problem, "description": "refused: each field and reference named"}}
KEY_HEADER = Header(None, alias="Idempotency-Key", max_length=255, min_length=1,
                    description="a retry with the same key and body returns the same jobs")


@dataclass
class Services:
    settings: Settings
    redis: redis.Redis
    ledger: Ledger
    intake: Intake
    idempotency: IdempotencyStore
    tokens: Tokens
    registry: CollectorRegistry


def create_app(settings: Settings, tokens: Sequence[str]) -> FastAPI:
    """The service for these settings; `tokens` empty means no authentication (local only)."""
    client = redis.Redis.from_url(settings.redis_url, decode_responses=True)
    ledger = Ledger(client)
    celery = create_celery_app(settings, main="cutout-serve", current=False)
    services = Services(settings, client, ledger, Intake(settings, ledger, celery),
                        IdempotencyStore(client, settings.serve_idempotency_ttl_s),
                        Tokens(tokens), registry_for(settings, client))
    app = FastAPI(title="cutout", version="1", docs_url=None, redoc_url=None,
                  description="Remove the backgrounds of many images: queue them, follow "
                  "them, scrape the metrics. Webhooks: see docs/serve.md.")
    app.state.services = services
    app.add_middleware(BodyLimit, max_bytes=settings.serve_max_body_bytes)
    install_error_handlers(app)
    _routes(app, services)
    return app


bearer = HTTPBearer(auto_error=False, description="a token of CUTOUT_SERVE_TOKENS")


BEARER = Security(bearer)


def _scope(request: Request, _: HTTPAuthorizationCredentials | None = BEARER) -> str:
    services: Services = request.app.state.services
    return services.tokens.scope(request.headers.get("authorization"))


def _routes(app: FastAPI, s: Services) -> None:
    @app.post("/v1/jobs", status_code=202, response_model=JobsAccepted,
              responses={**PROBLEMS, 400: {"model": Problem, "description": "body not JSON"},
                         413: {"model": Problem, "description": "body too large"}})
    def post_jobs(body: JobsRequest, response: Response, scope: str = Depends(_scope),
                  idempotency_key: str | None = KEY_HEADER) -> JobsAccepted:
        """Queue images: every reference and option is checked first (a refusal queues
        nothing). Answers 202 with the jobs and `Location: /v1/batches/{batch}`."""
        plan, fresh = _plan(s, body, scope, idempotency_key)
        response.headers["Location"] = f"/v1/batches/{quote(plan.batch, safe='')}"
        if fresh:
            states = ["ACCEPTED"] * len(plan.jobs)
        else:
            records = s.ledger.get_many([job_id for job_id, _ in plan.jobs])
            states = [str(r.state) if r else "ACCEPTED" for r in records]
        return JobsAccepted(batch=plan.batch, jobs=[
            JobRef(id=job_id, reference=ref, state=state)
            for (job_id, ref), state in zip(plan.jobs, states, strict=True)])

    @app.get("/v1/jobs/{job_id}", response_model=Job,
             responses={**PROBLEMS, 404: {"model": Problem, "description": "no such job"}})
    def get_job(job_id: str = Path(max_length=200), _: str = Depends(_scope)) -> Job:
        """One job's record, webhook attempts included."""
        record = s.ledger.get(job_id)
        if record is None:
            raise NotFound(f"no job {job_id}")
        return Job.of(record)

    @app.get("/v1/batches/{name}", response_model=BatchPage,
             responses={**PROBLEMS, 404: {"model": Problem, "description": "no such batch"}})
    def get_batch(name: str = Path(max_length=200), _: str = Depends(_scope),
                  offset: int = Query(0, ge=0), limit: int = Query(100, ge=1, le=1000)
                  ) -> BatchPage:
        """A batch's counts by state and one page of its jobs (ordered by job id)."""
        ids = s.ledger.batch_ids(name) if ":" not in name else []
        if not ids:
            raise NotFound(f"no batch {name}")
        page = [r for r in s.ledger.get_many(ids[offset:offset + limit]) if r is not None]
        counts = {state: 0 for state in STATES} | s.ledger.batch_counts(name)
        more = offset + limit < len(ids)
        return BatchPage(batch=name, counts=counts, total=len(ids),
                         offset=offset, limit=limit, next_offset=offset + limit if more else None,
                         jobs=[Job.of(r) for r in page])

    @app.get("/healthz", response_model=Health, responses={503: {"model": Health}})
    def healthz(response: Response) -> Health:
        """No token needed: whether Redis and the broker answer."""
        health = Health(redis=_redis_up(s.redis), broker=_broker_up(s.settings))
        if not (health.redis and health.broker):
            response.status_code = 503
        return health

    @app.get("/metrics", response_class=Response, responses={
        **PROBLEMS, 200: {"content": {CONTENT_TYPE_LATEST: {"schema": {"type": "string"}}},
                          "description": "Prometheus text format"}})
    def metrics(_: str = Depends(_scope)) -> Response:
        """Every figure computed now from the ledger, the workers' counters and the broker."""
        return Response(generate_latest(s.registry), media_type=CONTENT_TYPE_LATEST)


def _plan(s: Services, body: JobsRequest, scope: str, key: str | None) -> tuple[Plan, bool]:
    """The request's jobs, queued; (plan, False) when a retry found them under its key."""
    body_print = fingerprint(body.model_dump())
    if key is not None:
        found = s.idempotency.find(scope, key, body_print)
        if found is not None:
            return _finish(s, scope, key, body_print, *found), False
    plan = s.intake.plan(body)
    if key is not None and not s.idempotency.reserve(scope, key, body_print, plan):
        found = s.idempotency.find(scope, key, body_print)  # another request was first
        if found is not None:
            return _finish(s, scope, key, body_print, *found), False
    s.intake.enqueue(plan)
    if key is not None:
        s.idempotency.done(scope, key, body_print, plan)
    return plan, True


def _finish(s: Services, scope: str, key: str, body_print: str, plan: Plan, done: bool) -> Plan:
    """A plan recorded under the key: queued again in full when its request did not end
    (the ledger keeps jobs recorded before as they are; their claim makes repeats free)."""
    if not done:
        s.intake.enqueue(plan)
        s.idempotency.done(scope, key, body_print, plan)
    return plan


def _redis_up(client: redis.Redis) -> bool:
    try:
        return bool(client.ping())
    except (redis.RedisError, OSError):
        return False


def _broker_up(settings: Settings) -> bool:
    try:
        with Connection(settings.broker, connect_timeout=BROKER_TIMEOUT_S) as conn:
            conn.ensure_connection(max_retries=1, timeout=BROKER_TIMEOUT_S)
            return True
    except Exception as exc:
        log.warning("the broker does not answer: %s", exc)
        return False
