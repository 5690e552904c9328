"""The poll queue's task: `cutout.poll`, one self-rescheduling loop that polls due TaskUIDs
in batches, hands finished jobs to `cutout.collect`, and now and then sweeps stale jobs."""

from __future__ import annotations

import logging
import threading
import time
import uuid
from typing import Any

import redis
from celery.signals import worker_ready

from config import Settings, get_settings
from config.timing import max_countdown_s
from tasks.celery_app import app
from tasks.limits.limiter import TokenWait
from tasks.messages import send_jobs
from tasks.retrying import TASK_OPTIONS
from tasks.stages.poll import poll_batch
from tasks.stages.runtime import Runtime, runtime
from tasks.stages.sweep import stale_after_s, sweep
from tasks.store.ledger import OPEN_JOBS
from tasks.store.schedule import TickMarker

__all__ = ["ensure_poll_loop", "poll"]

log = logging.getLogger(__name__)

SWEEP_KEY = "cutout:sweep"
SWEEP_EVERY_MAX_S = 30
NEVER_S = 1e9  # a slack no planned loop exceeds


@app.task(name="cutout.poll", ignore_result=True, **TASK_OPTIONS)
def poll(self: Any, tick_id: str) -> dict[str, Any]:
    """Poll one batch of due jobs, then schedule the next round (or stop when none wait)."""
    rt = runtime()
    if not rt.ticks.owns_or_adopts(tick_id, _marker_ttl(rt.settings, 0)):
        return {"stale": True}  # another loop runs; this message is a leftover
    _maybe_sweep(rt)
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
    for done in result.finished:
        app.send_task("cutout.collect", kwargs={"job_id": done.job_id, "urls": list(done.urls),
                                                "credits": done.credits})
    # While their collect runs, finished jobs are not asked about again.
    rt.schedule.reschedule([f.job_id for f in result.finished], _collect_lease(rt))
    _next_round(rt, tick_id, None)
    return {"calls": result.calls, "finished": len(result.finished), "failed": result.failed,
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


@worker_ready.connect
def _loop_on_worker_start(**_: Any) -> None:
    """A (re)started worker makes sure the loop runs (it also sweeps jobs left behind), and
    keeps making sure: a loop that died for good (a hard time limit, Redis down past its
    retries) is started again within poll_max_interval_s, by whichever worker looks first."""
    settings = get_settings()
    client = redis.Redis.from_url(settings.redis_url, decode_responses=True)
    ensure_poll_loop(settings, TickMarker(client))
    threading.Thread(target=_watch_loop, args=(settings, client), name="cutout-poll-watch",
                     daemon=True).start()


def _watch_loop(settings: Settings, client: redis.Redis) -> None:
    ticks = TickMarker(client)
    while True:
        time.sleep(settings.poll_max_interval_s)
        try:
            # One Lua call; sends a task only when no loop is planned (or one is long overdue),
            # never to hurry a loop that waits to gather due jobs into one call.
            ensure_poll_loop(settings, ticks, sooner=False)
        except Exception:
            log.exception("could not check the poll loop; trying again later")


def _maybe_sweep(rt: Runtime) -> None:
    every = int(min(SWEEP_EVERY_MAX_S, max(1.0, stale_after_s(rt) / 4)))
    if not rt.redis.set(SWEEP_KEY, "1", nx=True, ex=every):
        return
    found = sweep(rt)
    if found.resubmit or found.rescheduled:
        log.warning("sweeper: %d jobs submitted again, %d put back on the poll schedule",
                    len(found.resubmit), len(found.rescheduled))
    if found.resubmit:  # no producer taken from the pool for nothing
        send_jobs(app, found.resubmit)


def _next_round(rt: Runtime, tick_id: str, wait_s: float | None) -> None:
    s = rt.settings
    due, first = rt.schedule.status()
    if first is None and rt.redis.zcard(OPEN_JOBS):
        first = s.poll_max_interval_s  # nothing to poll, but open jobs to sweep now and then
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


def _collect_lease(rt: Runtime) -> float:
    return min(max(rt.settings.poll_max_interval_s, 60.0), max_countdown_s(rt.settings))
