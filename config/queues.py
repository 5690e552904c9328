"""The queues a job's messages travel on, and which task goes on which (no kombu here: the
stages read the names without loading the broker's library)."""

from __future__ import annotations

__all__ = ["QUEUES", "TASK_ROUTES"]

QUEUES = ("submit", "poll")
TASK_ROUTES = {
    "cutout.submit": {"queue": "submit"},
    "cutout.persist": {"queue": "poll"},
    "cutout.poll": {"queue": "poll"},
}
