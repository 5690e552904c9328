"""The Celery app: `celery -A tasks worker` (no -Q) consumes the submit, poll and collect queues."""

from __future__ import annotations

from celery import Celery

from config import Settings, get_settings
from config.celery import celery_config

__all__ = ["app", "create_app"]


def create_app(settings: Settings, *, main: str = "cutout", current: bool = True) -> Celery:
    """An app configured from these settings (producers build one for explicit settings)."""
    celery = Celery(main, set_as_current=current)
    celery.conf.update(celery_config(settings))
    return celery


app = create_app(get_settings())
