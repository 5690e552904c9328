"""The collectors: threads in each worker's main process that download finished results.

Downloads run here, not in the prefork pool, so a slow result server never holds a process
that the rate-limited stages (submit, poll) need (DESIGN.md rule 8). Each worker runs
CUTOUT_COLLECT_THREADS of them, fed from the collect schedule in Redis: a job there is claimed
for a lease, so a worker that dies only delays its jobs by that lease, and two workers never
download the same job at once. Started by the worker_ready handler in `tasks/upkeep.py`.
"""

from __future__ import annotations

import logging
import threading
import time
from concurrent.futures import ThreadPoolExecutor

from tasks.logs import job_log_context
from tasks.stages.collect import collect_due, collect_job
from tasks.stages.runtime import Runtime

__all__ = ["Collector"]

log = logging.getLogger(__name__)

IDLE_WAIT_MAX_S = 0.5  # longest pause between looks at an empty schedule
ERROR_WAIT_S = 1.0  # pause after Redis failed to answer


class Collector:
    """One dispatcher thread handing due jobs to a pool of download threads."""

    def __init__(self, rt: Runtime, threads: int) -> None:
        self.rt = rt
        self._pool = ThreadPoolExecutor(threads, thread_name_prefix="cutout-collect")
        self._free = threading.Semaphore(threads)

    def start(self) -> None:
        threading.Thread(target=self._dispatch, name="cutout-collect-dispatch",
                         daemon=True).start()

    def _dispatch(self) -> None:
        while True:
            self._free.acquire()  # a thread is free: take one due job for it
            try:
                job_ids = collect_due(self.rt, 1)
            except Exception:
                log.exception("could not read the collect schedule; trying again")
                job_ids = []
                time.sleep(ERROR_WAIT_S)
            if not job_ids:
                self._free.release()
                self._idle()
                continue
            self._pool.submit(self._collect, job_ids[0])

    def _idle(self) -> None:
        try:
            _, first = self.rt.collect_schedule.status()
        except Exception:
            first = None
        time.sleep(IDLE_WAIT_MAX_S if first is None else min(max(first, 0.01), IDLE_WAIT_MAX_S))

    def _collect(self, job_id: str) -> None:
        try:
            with job_log_context(job_id, "collect"):
                collect_job(self.rt, job_id)
        except Exception:  # the job stays scheduled: its lease runs out and it is tried again
            log.exception("collecting job %s failed unexpectedly", job_id)
        finally:
            self._free.release()
