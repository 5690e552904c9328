"""The poll queue's task: `cutout.poll`, one self-rescheduling loop that polls due TaskUIDs
in batches (finished jobs go on the collect schedule, for the collectors). It runs while jobs
wait to be polled; each worker's upkeep thread starts it again should it die."""

from __future__ import annotations

import uuid
from typing import Any

from config import Settings
from config.timing import max_countdown_s
from tasks.celery_app import app
from tasks.limits.limiter import TokenWait
from tasks.retrying import TASK_OPTIONS
from tasks.stages.poll import poll_batch
from tasks.stages.runtime import Runtime, runtime
from tasks.store.schedule import TickMarker

__all__ = ["ensure_poll_loop", "poll"]

NEVER_S = 1e9  # a slack no planned loop exceeds


@app.task(name="cutout.poll", ignore_result=True, **TASK_OPTIONS)
def poll(self: Any, tick_id: str) -> dict[str, Any]:
    """Poll one batch of due jobs, then schedule the next round (or stop when none wait)."""
    rt = runtime()
    if not rt.ticks.owns_or_adopts(tick_id, _marker_ttl(rt.settings, 0)):
        return {"stale": True}  # another loop runs; this message is a leftover
    try:
        result = poll_batch(rt)
    except TokenWait as exc:
        _next_round(rt, tick_id, exc.retry_in_s)
        return {"waiting": exc.retry_in_s}
    except Exception:
        # The loop must outlive any one failure: plan the next round, then let Celery record
        # (and maybe retry) this one; a retried message finds itself stale and stops.
        _next_round(rt, tick_id, rt.settings.poll_max_interval_s)
        raise
    _next_round(rt, tick_id, None)
    return {"calls": result.calls, "finished": result.finished, "failed": result.failed,
            "pending": result.pending}


def ensure_poll_loop(settings: Settings, ticks: TickMarker, *, sooner: bool = True) -> None:
    """Start the poll loop unless one runs that will poll within about poll_interval_s
    (one Lua call; a loop long overdue is replaced, and with `sooner` one sleeping longer too).
    """
    tick_id = uuid.uuid4().hex
    countdown = min(settings.poll_interval_s, max_countdown_s(settings))
    grace = 2 * countdown + 5  # a loop overdue by this much most likely died with its worker
    slack = countdown / 2 if sooner else NEVER_S
    if ticks.start(tick_id, countdown, _marker_ttl(settings, countdown), slack_s=slack,
                   grace_s=grace):
        poll.apply_async((tick_id,), countdown=countdown)


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
    new_id = uuid.uuid4().hex
    if rt.ticks.hand_over(tick_id, new_id, countdown, _marker_ttl(s, countdown)):
        poll.apply_async((new_id,), countdown=countdown)


def _marker_ttl(settings: Settings, countdown: float) -> float:
    return countdown + settings.task_time_limit_s + 10

