"""The poll loop: rounds that poll due TaskUIDs in batches (finished jobs go on the collect
schedule, for the collectors). The rounds run in a thread of each worker's main process (the
Poller), never in the prefork pool, so a slow ListTasksDetails answer never holds a process
that submits, whatever `-c` the worker has (DESIGN.md rule 8).

One round at a time in the whole cluster: the tick marker in Redis says when the next round is
due, and the first poller to see it due takes it (a running round's tick starts with `run-`;
a round whose worker died is taken over once it is overdue by a call's lease). A round plans
the next, or ends the loop when no job waits; a submit that lands, a producer and each worker's
upkeep start it again (`ensure_poll_loop`: one Lua call, no message).
"""

from __future__ import annotations

import logging
import time
import uuid
from typing import Any

from redis.client import Pipeline

from config import Settings
from config.timing import max_countdown_s
from tasks.background import start_forever
from tasks.celery_app import app
from tasks.limits.limiter import TokenWait, call_lease_s
from tasks.retrying import TASK_OPTIONS
from tasks.stages.poll import poll_batch
from tasks.stages.runtime import Runtime
from tasks.store.schedule import TickMarker

__all__ = ["Poller", "ensure_poll_loop", "poll"]

log = logging.getLogger(__name__)

NEVER_S = 1e9  # a slack no planned loop exceeds
RUNNING = "run-"  # the prefix of a tick whose round is running
# The longest a poller sleeps between looks at the marker: the shortest countdown any plan
# uses (look_every_s), within these bounds. Every plan but the running round's own (which its
# poller picks up at once) is made at least that far ahead, so a poller that looks this often
# is never late for a round, and an idle one makes few calls.
LOOK_MIN_S, LOOK_MAX_S = 0.05, 1.0
ERROR_WAIT_S = 1.0  # pause after Redis failed to answer


@app.task(name="cutout.poll", ignore_result=True, **TASK_OPTIONS)
def poll(self: Any, tick_id: str) -> dict[str, Any]:
    """Kept for messages an older version sent: polling now runs in the workers' Pollers."""
    return {"stale": True}


def ensure_poll_loop(settings: Settings, ticks: TickMarker, *, sooner: bool = True,
                     pipe: Pipeline | None = None) -> None:
    """Plan a round unless one is planned within about poll_interval_s (one Lua call, or
    queued on `pipe`; a loop long overdue is replaced, and with `sooner` one planned later
    too)."""
    countdown = _start_countdown(settings)
    grace = 2 * countdown + 5  # a loop overdue by this much most likely died with its worker
    slack = countdown / 2 if sooner else NEVER_S
    ticks.start(uuid.uuid4().hex, countdown, _marker_ttl(settings, countdown), slack_s=slack,
                grace_s=grace, pipe=pipe)


class Poller:
    """One thread of a worker's main process that runs the poll rounds that fall due."""

    def __init__(self, rt: Runtime) -> None:
        self.rt = rt
        self.look_every_s = min(max(_start_countdown(rt.settings), LOOK_MIN_S), LOOK_MAX_S)

    def start(self) -> None:
        # A failed round leaves its marker: the lease runs out and a poller retakes it.
        start_forever("cutout-poller", self.once, error_wait_s=ERROR_WAIT_S, log=log,
                      failed="poll round failed; trying again")

    def once(self) -> bool:
        """Run the round that is due, if any and if this poller takes it first; else wait a
        moment. True when a round ran."""
        planned = self.rt.ticks.peek()
        wait = self.look_every_s if planned is None else self._due_in(*planned)
        if wait > 0:
            time.sleep(min(wait, self.look_every_s))
            return False
        assert planned is not None
        mine = RUNNING + uuid.uuid4().hex
        if not self.rt.ticks.hand_over(planned[0], mine, 0.0,
                                       _marker_ttl(self.rt.settings, self._lease_s())):
            return False  # another poller took it
        run_round(self.rt, mine)
        return True

    def _due_in(self, tick_id: str, in_s: float) -> float:
        # A running round is someone else's until it is overdue by a call's lease.
        return in_s + self._lease_s() if tick_id.startswith(RUNNING) else in_s

    def _lease_s(self) -> float:
        return call_lease_s(self.rt.settings) + 5


def run_round(rt: Runtime, tick_id: str) -> None:
    """Poll one batch of due jobs, then plan the next round (or stop when none wait)."""
    try:
        poll_batch(rt)
    except TokenWait as exc:
        _next_round(rt, tick_id, exc.retry_in_s)
        return
    except Exception:
        # The loop must outlive any one failure: plan the next round, then report this one.
        _next_round(rt, tick_id, rt.settings.poll_max_interval_s)
        raise
    _next_round(rt, tick_id, None)


def _next_round(rt: Runtime, tick_id: str, wait_s: float | None) -> None:
    s = rt.settings
    due, first = rt.schedule.status()
    if first is None:
        rt.ticks.release(tick_id)
        if rt.schedule.size():  # a job arrived between the check and the release
            ensure_poll_loop(s, rt.ticks)
        return
    if wait_s is not None:
        countdown = wait_s
    elif due >= s.poll_batch_size:
        countdown = 0.0
    else:  # gather more due jobs into the next call rather than polling each on its own
        countdown = max(first, s.poll_interval_s)
    countdown = min(countdown, max_countdown_s(s))
    rt.ticks.hand_over(tick_id, uuid.uuid4().hex, countdown, _marker_ttl(s, countdown))


def _start_countdown(settings: Settings) -> float:
    """How far ahead ensure_poll_loop plans a round."""
    return min(settings.poll_interval_s, max_countdown_s(settings))


def _marker_ttl(settings: Settings, countdown: float) -> float:
    return countdown + settings.task_time_limit_s + 10
