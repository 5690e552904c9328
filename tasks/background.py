"""Threads of a worker's main process that run one step after another until the process ends
(the poller, upkeep): a failed step is logged and the next one waits a moment, so Redis or the
broker being away never ends the thread."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable

__all__ = ["start_forever"]


def start_forever(name: str, step: Callable[[], object], *, error_wait_s: float,
                  log: logging.Logger, failed: str, level: int = logging.ERROR) -> None:
    """Start a daemon thread `name` running step() again and again; a step that raises is
    logged at `level` with the message `failed` and its traceback, then waits error_wait_s."""
    def run() -> None:
        while True:
            try:
                step()
            except Exception:
                log.log(level, failed, exc_info=True)
                time.sleep(error_wait_s)

    threading.Thread(target=run, name=name, daemon=True).start()
