"""Worker logs: with CUTOUT_LOG_FORMAT=json, Celery's handlers write one JSON object per line
(config/logs.py) and the start-up banner is left out; every line a task logs carries its job's
id, batch and stage (the task's name), and so does Celery's "received" line of a submit."""

from __future__ import annotations

import logging
from collections import OrderedDict
from contextlib import AbstractContextManager
from functools import lru_cache
from typing import Any

import redis
from celery.signals import (
    after_setup_logger,
    after_setup_task_logger,
    celeryd_init,
    task_postrun,
    task_prerun,
)

from config import get_settings
from config.logs import clear_job_context, configure, job_context, set_job_context, use_json
from tasks.store.ledger import job_key

__all__ = ["job_log_context"]

_tokens: dict[str, Any] = {}
_batches: OrderedDict[str, str] = OrderedDict()  # job id -> batch, the latest few
BATCHES_KEPT = 1024


def _json() -> bool:
    return get_settings().log_format == "json"


@celeryd_init.connect
def _json_from_the_start(instance: Any = None, options: Any = None, **_: Any) -> None:
    """Before Celery's own set-up: a JSON handler on the root logger (Celery keeps it), so
    even the warnings of its start are JSON lines; and no banner (it is not JSON)."""
    if not _json():
        return
    level = (options or {}).get("loglevel") or logging.WARNING
    configure(get_settings(), level)
    if instance is not None:
        instance.quiet = True


@after_setup_logger.connect
@after_setup_task_logger.connect
def _json_handlers(logger: logging.Logger, **_: Any) -> None:
    if _json():
        use_json(logger)
        for handler in logger.handlers:
            handler.addFilter(ReceivedFilter())


@task_prerun.connect
def _context_on(task_id: str = "", task: Any = None, args: Any = (), kwargs: Any = None,
                **_: Any) -> None:
    name = getattr(task, "name", "") or ""
    job_id = _job_id(name, task_id, args, kwargs or {})
    _tokens[task_id] = set_job_context(job_id=job_id, batch=_batch(job_id), task_id=task_id,
                                       stage=name.removeprefix("cutout."), task_name=name)


@task_postrun.connect
def _context_off(task_id: str = "", **_: Any) -> None:
    token = _tokens.pop(task_id, None)
    if token is not None:
        clear_job_context(token)


def job_log_context(job_id: str, stage: str) -> AbstractContextManager[None]:
    """For work on a job outside a Celery task (a collector thread): its lines carry the job,
    its batch and the stage, as a task's do."""
    return job_context(job_id=job_id, batch=_batch(job_id), stage=stage)


class ReceivedFilter(logging.Filter):
    """Celery's lines about a message (received, in the main process, outside any task) carry
    the task in `data`: its stage and id, and for a submit the job (its task id) and batch."""

    def filter(self, record: logging.LogRecord) -> bool:
        data = getattr(record, "data", None)
        name = str(data.get("name", "")) if isinstance(data, dict) else ""
        if name.startswith("cutout.") and not hasattr(record, "stage"):
            assert isinstance(data, dict)
            record.stage, record.task_name, record.task_id = (
                name.removeprefix("cutout."), name, data.get("id"))
            if name == "cutout.submit" and data.get("id"):
                record.job_id = data["id"]
                record.batch = _batch(str(data["id"]))
        return True


def _job_id(name: str, task_id: str, args: Any, kwargs: dict[str, Any]) -> str | None:
    """The job a task is about: the submit task's own id; the others name it."""
    if name == "cutout.submit":
        return task_id
    if "job_id" in kwargs:
        return str(kwargs["job_id"])
    first = args[0] if args else kwargs.get("submitted")
    return str(first["job_id"]) if isinstance(first, dict) and "job_id" in first else None


def _batch(job_id: str | None) -> str | None:
    """The job's batch, looked up once per job and process (JSON logs only: a Redis call)."""
    if job_id is None or not _json():
        return None
    if job_id not in _batches:
        try:
            _batches[job_id] = str(_redis().hget(job_key(job_id), "batch") or "")
        except redis.RedisError:
            return None  # a log line never fails for want of its batch
        while len(_batches) > BATCHES_KEPT:
            _batches.popitem(last=False)
    return _batches[job_id] or None


@lru_cache(maxsize=1)
def _redis() -> redis.Redis:
    return redis.Redis.from_url(get_settings().redis_url, decode_responses=True,
                                socket_timeout=2)
