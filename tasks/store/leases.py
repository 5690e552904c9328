"""Leases that expire with their process: a claim's lease is short, and a thread of the process
holding it renews it while the process lives. A process killed with SIGKILL renews nothing, so
its claims free within one lease (seconds), not after a task time limit.

One keeper per process, started on first use (so after the prefork fork, in the process that
holds the claims). Its thread starts with SIGTERM and SIGQUIT blocked: a stop signal must reach
the task's own thread, which defers it while a call is in flight (`tasks/stages/shutdown.py`).
"""

from __future__ import annotations

import logging
import signal
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager

import redis

from tasks.store.ledger import LEASES, job_key

__all__ = ["LeaseKeeper"]

log = logging.getLogger(__name__)

# KEYS: lease index, then job hashes. ARGV: lease seconds, then (job id, owner) per job hash.
# Renews each lease still held by its owner (a job that moved on, or was taken over, is left
# alone).
_RENEW = """
local t = redis.call('TIME')
local until_ = tonumber(t[1]) + tonumber(t[2]) / 1000000 + tonumber(ARGV[1])
local n = 0
for i = 2, #KEYS do
  local f = redis.call('HMGET', KEYS[i], 'state', 'lease_owner')
  if f[1] == 'SUBMITTING' and f[2] == ARGV[2 * i - 1] then
    redis.call('HSET', KEYS[i], 'lease_until', string.format('%.6f', until_))
    redis.call('ZADD', KEYS[1], until_, ARGV[2 * i - 2])
    n = n + 1
  end
end
return n
"""


class LeaseKeeper:
    """Renews the leases this process holds every third of a lease."""

    def __init__(self, client: redis.Redis, lease_s: float) -> None:
        self.redis = client
        self.lease_s = lease_s
        self._held: dict[str, str] = {}  # job id -> owner
        self._lock = threading.Lock()
        self._renew = client.register_script(_RENEW)
        self._thread: threading.Thread | None = None

    @contextmanager
    def holding(self, job_id: str, owner: str) -> Iterator[None]:
        """Keep job_id's lease (claimed by owner) alive for the body's duration."""
        self._ensure_thread()
        with self._lock:
            self._held[job_id] = owner
        try:
            yield
        finally:
            with self._lock:
                self._held.pop(job_id, None)

    def renew_now(self) -> int:
        """Renew every held lease once; the number still held."""
        with self._lock:
            held = dict(self._held)
        if not held:
            return 0
        pairs = [item for job_id, owner in held.items() for item in (job_id, owner)]
        return int(self._renew(keys=[LEASES, *(job_key(j) for j in held)],
                               args=[self.lease_s, *pairs]))

    def _ensure_thread(self) -> None:
        if self._thread is not None and self._thread.is_alive():
            return
        thread = threading.Thread(target=self._run, name="cutout-leases", daemon=True)
        blocked = {signal.SIGTERM, signal.SIGQUIT, signal.SIGINT}
        old = signal.pthread_sigmask(signal.SIG_BLOCK, blocked)  # the new thread inherits it
        try:
            thread.start()
        finally:
            signal.pthread_sigmask(signal.SIG_SETMASK, old)
        self._thread = thread

    def _run(self) -> None:
        while True:
            time.sleep(self.lease_s / 3)
            try:
                self.renew_now()
            except redis.RedisError as exc:  # Redis away: the leases may lapse; retry soon
                log.warning("could not renew leases: %s", exc)
