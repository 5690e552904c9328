"""Each worker's outbox thread: started when the worker is ready, in its main process (not in
the pool that runs the stages). It folds events into the metrics' totals, turns finished jobs'
events into webhook deliveries, and sends them (tasks/stages/outbox.py)."""

from __future__ import annotations

import logging
import threading
import time
from typing import Any

from celery.signals import worker_ready

from config import get_settings
from tasks.stages.outbox import Outbox

__all__ = ["run_outbox"]

log = logging.getLogger(__name__)

PAUSE_AFTER_ERROR_S = 5.0


@worker_ready.connect
def _outbox_on_worker_start(**_: Any) -> None:
    outbox = Outbox.build(get_settings())
    threading.Thread(target=run_outbox, args=(outbox,), name="cutout-outbox",
                     daemon=True).start()


def run_outbox(outbox: Outbox) -> None:
    """Rounds until the process ends; a failed round (Redis away) is logged and tried again."""
    started = False
    while True:
        try:
            if not started:
                outbox.start()
                started = True
            time.sleep(outbox.pause_s(outbox.step()))
        except Exception:
            log.exception("the outbox round failed (events, webhooks); trying again in %.0f s",
                          PAUSE_AFTER_ERROR_S)
            time.sleep(PAUSE_AFTER_ERROR_S)
