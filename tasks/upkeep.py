"""Each worker's upkeep thread, in its main process: what keeps jobs moving when workers die.

Every HEARTBEAT_S it
- records the delivery tags of the messages this worker holds (`tasks/store/workers.py`);
- on the Redis broker, gives back to their queue the messages a dead worker held (taken from
  the broker, held by no live worker for RESCUE_AFTER_S): they come back in seconds, not after
  the visibility timeout (RabbitMQ does this by itself when the dead worker's connection
  closes);
- every SWEEP_EVERY_S, one worker at a time sweeps (`tasks/stages/sweep.py`): jobs whose lease
  lapsed, stale jobs, jobs off their schedule;
- every CUTOUT_POLL_MAX_INTERVAL_S, makes sure a poll round is planned (one Lua call).

The worker_ready handler below also starts the collectors (`tasks/collector.py`) and the
poller (`tasks/poll.py`).
"""

from __future__ import annotations

import logging
import time
from typing import Any

from celery import Celery
from celery.signals import worker_ready
from celery.worker import state

from config import get_settings
from tasks.background import start_forever
from tasks.celery_app import app
from tasks.collector import Collector
from tasks.messages import send_jobs
from tasks.poll import Poller, ensure_poll_loop
from tasks.stages.runtime import Runtime
from tasks.stages.sweep import sweep
from tasks.store.workers import WorkerRegistry

__all__ = ["Upkeep"]

log = logging.getLogger(__name__)

HEARTBEAT_S = 2.0
HELD_TTL_S = 3 * HEARTBEAT_S  # a worker silent for three beats is taken for dead
RESCUE_AFTER_S = HELD_TTL_S + 4 * HEARTBEAT_S  # every live worker has beaten since
SWEEP_EVERY_S = 5.0


class Upkeep:
    """The heartbeat, the rescue, the sweep and the poll-loop watch of one worker."""

    def __init__(self, rt: Runtime, celery: Celery, name: str) -> None:
        self.rt = rt
        self.app = celery
        self.name = name
        self.registry = WorkerRegistry(rt.redis)
        self._next_watch = 0.0
        # One broker connection for every rescue, opened on first use (False: not Redis).
        self._broker: Any = None

    def start(self) -> None:
        start_forever("cutout-upkeep", self._beat, error_wait_s=HEARTBEAT_S, log=log,
                      level=logging.WARNING,  # Redis or the broker away: try again next beat
                      failed=f"upkeep round failed; trying again in {HEARTBEAT_S:.0f} s")

    def _beat(self) -> None:
        self.once()
        time.sleep(HEARTBEAT_S)

    def once(self) -> None:
        self.registry.beat(self.name, held_tags(), HELD_TTL_S)
        rescue, sweep = self._turns(("rescue", HEARTBEAT_S), ("sweep", SWEEP_EVERY_S))
        if rescue:
            self.rescue()
        if sweep:
            self.sweep()
        if time.monotonic() >= self._next_watch:
            # Sends a task only when no loop is planned (or one is long overdue), never to
            # hurry a loop that waits to gather due jobs into one call.
            ensure_poll_loop(self.rt.settings, self.rt.ticks, sooner=False)
            self._next_watch = time.monotonic() + self.rt.settings.poll_max_interval_s

    def rescue(self) -> int:
        """Give the messages held by dead workers back to their queue (Redis broker only)."""
        if self._broker is False:
            return 0
        if self._broker is None:
            self._broker = self.app.connection_for_write()
            if self._broker.transport.driver_type != "redis":
                self._broker.release()  # RabbitMQ gives a dead worker's messages back itself
                self._broker = False
                return 0
        try:
            lost = self._give_back(self._broker)
        except Exception:
            self._broker.release()  # a fresh connection next time
            self._broker = None
            raise
        if lost:
            log.warning("gave %d messages held by a worker that stopped back to their queues",
                        len(lost))
        return len(lost)

    def _give_back(self, conn: Any) -> list[str]:
        channel: Any = conn.default_channel
        client = channel.client
        old = client.zrangebyscore(channel.unacked_index_key, "-inf",
                                   time.time() - RESCUE_AFTER_S)
        if not old:
            return []
        held = self.registry.held()
        lost = [tag for tag in (t.decode() if isinstance(t, bytes) else t for t in old)
                if tag not in held]
        for tag in lost:
            channel.qos.restore_by_tag(tag, client=client)
        return lost

    def sweep(self) -> None:
        found = sweep(self.rt)
        if found.resubmit or found.rescheduled:
            log.warning("sweeper: %d jobs submitted again, %d put back on their schedule",
                        len(found.resubmit), len(found.rescheduled))
        if found.resubmit:
            send_jobs(self.app, found.resubmit)

    def _turns(self, *periods: tuple[str, float]) -> list[bool]:
        """For each (what, every_s): True for one worker per period (the first to ask); one
        round trip for all."""
        pipe = self.rt.redis.pipeline(transaction=False)
        for what, every_s in periods:
            pipe.set(f"cutout:upkeep:{what}", self.name, nx=True, px=int(every_s * 1000))
        return [bool(taken) for taken in pipe.execute()]


def held_tags() -> list[str]:
    """The delivery tags of every message this worker holds (reserved, running, or waiting
    for its countdown), read from Celery's own bookkeeping."""
    for _ in range(5):  # the consumer thread may change the dict while it is read
        try:
            return [r.message.delivery_tag for r in list(state.requests.values())]
        except RuntimeError:
            time.sleep(0.001)
    return [r.message.delivery_tag for r in list(state.requests.values())]


@worker_ready.connect
def _start_worker_threads(sender: Any = None, **_: Any) -> None:
    """The worker's own threads run with their own parts, never the pool processes' ones."""
    settings = get_settings()
    rt = Runtime.build(settings)
    warning = rt.durability.warning()
    if warning:
        log.warning(warning)
    Collector(rt, settings.collect_threads).start()
    Poller(Runtime.build(settings)).start()  # its own HTTP session: one per thread that calls
    upkeep = Upkeep(rt, app, getattr(sender, "hostname", None) or f"worker-{id(rt)}")
    ensure_poll_loop(settings, rt.ticks)  # a (re)started worker makes sure the loop runs
    upkeep.start()
