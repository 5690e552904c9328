"""Every way to enqueue: the Python API (producers.api), the CLI, manifest readers."""

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
