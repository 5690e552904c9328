"""Log lines: the usual text, or one JSON object per line (`CUTOUT_LOG_FORMAT=json`) for the log
stack a team already runs. Every line written while a job is being handled carries its
`job_id`, `batch` and `stage` (set with `job_context`), in both formats' records.

The one place that sets up logging: Celery's loggers are adapted by tasks/logs.py (signals),
`cutout serve` calls `configure` before uvicorn starts.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from contextvars import ContextVar, Token

from pythonjsonlogger.json import JsonFormatter

from config.settings import Settings

__all__ = ["JobContextFilter", "clear_job_context", "configure",
           "job_context", "json_formatter", "set_job_context", "use_json"]

TEXT_FORMAT = "[%(asctime)s: %(levelname)s/%(name)s] %(message)s"

_context: ContextVar[Mapping[str, str] | None] = ContextVar("cutout_log_context", default=None)


def set_job_context(**fields: str | None) -> Token[Mapping[str, str] | None]:
    """Put these fields on every line this thread (or task) logs until cleared."""
    return _context.set({k: v for k, v in fields.items() if v})


def clear_job_context(token: Token[Mapping[str, str] | None]) -> None:
    _context.reset(token)


@contextmanager
def job_context(**fields: str | None) -> Iterator[None]:
    token = set_job_context(**fields)
    try:
        yield
    finally:
        clear_job_context(token)


class JobContextFilter(logging.Filter):
    """Copies the job context onto each record (a field the call set itself is kept)."""

    def filter(self, record: logging.LogRecord) -> bool:
        for name, value in (_context.get() or {}).items():
            if not hasattr(record, name):
                setattr(record, name, value)
        return True


def json_formatter() -> logging.Formatter:
    """One JSON object per line: time, level, logger, message, then the job context and any
    `extra=` fields; an exception as `exc_info` text."""
    return JsonFormatter("%(asctime)s %(levelname)s %(name)s %(message)s",
                         rename_fields={"asctime": "time", "levelname": "level",
                                        "name": "logger"},
                         json_default=str)


def use_json(logger: logging.Logger) -> None:
    """Switch every handler of this logger to JSON lines with the job context."""
    for handler in logger.handlers:
        handler.setFormatter(json_formatter())
        _add_filter(handler)


def configure(settings: Settings, level: int | str = logging.INFO) -> None:
    """One handler on stderr in the configured format, on the root logger, every other handler
    removed: for `cutout serve`, and for a JSON-logging worker before Celery sets up its own
    (which then keeps this one)."""
    handler = logging.StreamHandler(sys.stderr)
    if settings.log_format == "json":
        handler.setFormatter(json_formatter())
        logging.captureWarnings(True)  # a warning is a log line too, not a bare text line
    else:
        handler.setFormatter(logging.Formatter(TEXT_FORMAT))
    _add_filter(handler)
    root = logging.getLogger()
    root.handlers = [handler]
    root.setLevel(level)
    for name in ("uvicorn", "uvicorn.error", "uvicorn.access"):
        named = logging.getLogger(name)
        named.handlers = []
        named.propagate = True


def _add_filter(handler: logging.Handler) -> None:
    if not any(isinstance(f, JobContextFilter) for f in handler.filters):
        handler.addFilter(JobContextFilter())

