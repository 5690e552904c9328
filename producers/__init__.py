"""Every way to enqueue: the Python API (producers.api), the CLI, manifest readers."""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from producers.api import (
        batch_counts,
        batch_jobs,
        enqueue,
        enqueue_many,
        get_job,
        retry_failed,
        wait,
    )

__all__ = ["batch_counts", "batch_jobs", "enqueue", "enqueue_many", "get_job", "retry_failed",
           "wait"]


def __getattr__(name: str) -> Any:
    # Lazy: producers.api imports tasks/, which builds the Celery app from the settings at
    # import. The `cutout` command (producers.cli) must start, and name a bad setting in one
    # line, without that.
    if name in __all__:
        return getattr(importlib.import_module("producers.api"), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
