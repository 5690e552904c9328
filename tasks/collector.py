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
from tasks.stages.collect import collect_claimed, collect_due_or_wait
from tasks.stages.runtime import Runtime
from tasks.store.records import JobRecord

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
            free = self._take_free()
            try:
                # One call takes a due job (and its fields) for every free thread, or tells
                # how long to wait.
                claimed, first = collect_due_or_wait(self.rt, free)
            except Exception:
                log.exception("could not read the collect schedule; trying again")
                claimed, first = [], None
                time.sleep(ERROR_WAIT_S)
            for _ in range(free - len(claimed)):
                self._free.release()
            for job_id, record in claimed:
                self._pool.submit(self._collect, job_id, record)
            if not claimed:
                time.sleep(IDLE_WAIT_MAX_S if first is None
                           else min(max(first, 0.01), IDLE_WAIT_MAX_S))

    def _take_free(self) -> int:
        """Wait for a free thread, then take every other one free now: how many taken."""
        self._free.acquire()
        taken = 1
        while self._free.acquire(blocking=False):
            taken += 1
        return taken

    def _collect(self, job_id: str, record: JobRecord | None) -> None:
        try:
            with job_log_context(job_id, "collect"):
                collect_claimed(self.rt, job_id, record)
        except Exception:  # the job stays scheduled: its lease runs out and it is tried again
            log.exception("collecting job %s failed unexpectedly", job_id)
        finally:
            self._free.release()
