"""The counters behind `cutout serve`'s /metrics, kept in Redis so that a restart of any process
loses nothing: API calls by action and outcome (counted by the API client's hook), and totals
derived from the events stream by one consumer group (credits spent, jobs finished, the
submit-to-finished latency, the jobs still waiting for their results).
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from functools import lru_cache

import redis
from redis.client import Pipeline
from redis.commands.core import Script

from tasks.store.ledger import EVENTS_STREAM, OPEN_JOBS, job_key
from tasks.store.scripts import ScriptCall, run_scripts
from tasks.store.stream import Entry

__all__ = ["API_RESULT_TTL_S", "APPLY_FUNCTIONS", "BOUNDS_JSON", "FINISHED_EVENTS",
           "LATENCY_BUCKETS_S", "METRICS_GROUP", "METRIC_KEYS", "ApiCallCounter", "EventTotals",
           "apply_events", "apply_events_call", "oldest_open_age_s", "read_event_totals"]

API_CALLS = "cutout:metrics:api_calls"  # hash: "Action outcome" -> calls
TOTALS = "cutout:metrics:events"  # hash: event type -> count, "credits" -> sum
SUBMITTED_AT = "cutout:metrics:submitted"  # zset: submitted, unfinished job -> when
LATENCY = "cutout:metrics:latency"  # hash: "b<i>" -> count in bucket i, "sum", "count"
METRICS_GROUP = "cutout-metrics"
FINISHED_EVENTS = ("job.succeeded", "job.failed", "job.needs_reconciliation")
LATENCY_BUCKETS_S = (1.0, 2.0, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0, 600.0, 1800.0, 3600.0,
                     4 * 3600.0, 12 * 3600.0, 24 * 3600.0)
API_RESULT_TTL_S = 24 * 3600.0  # the API deletes a task's results this long after it
BOUNDS_JSON = json.dumps(LATENCY_BUCKETS_S)

# Lua functions for scripts whose KEYS begin with: stream, totals, submitted-at, latency (this
# module's _APPLY, and the outbox's round). apply_rows acknowledges each row's entry for
# `group` and folds it into the totals only if that acknowledged it; metric_row makes a row
# ({id, kind or '', job, at, credits}) of an entry's fields as XREADGROUP gives them.
APPLY_FUNCTIONS = """
local metric_kinds = {['job.submitted'] = true, FINISHED}
local function metric_row(id, kv)
  local f = {}
  for i = 1, #kv, 2 do f[kv[i]] = kv[i + 1] end
  local kind = f['type'] or ''
  if not metric_kinds[kind] then kind = '' end
  return {id, kind, f['job_id'] or '', f['at'] or '0', f['credits'] or ''}
end
local function apply_rows(group, rows, bounds)
  local applied = 0
  for _, e in ipairs(rows) do
    if redis.call('XACK', KEYS[1], group, e[1]) == 1 and e[2] ~= '' then
      applied = applied + 1
      local kind, job, at = e[2], e[3], tonumber(e[4])
      if kind == 'job.submitted' then
        redis.call('ZADD', KEYS[3], at, job)
      else
        redis.call('HINCRBY', KEYS[2], kind, 1)
        local credits = e[5]
        if credits == '' and kind == 'job.failed' then
          credits = redis.call('HGET', 'cutout:job:' .. job, 'credits') or ''
        end
        if credits ~= '' then redis.call('HINCRBYFLOAT', KEYS[2], 'credits', credits) end
        local since = redis.call('ZSCORE', KEYS[3], job)
        if since then
          redis.call('ZREM', KEYS[3], job)
          local took = math.max(0, at - tonumber(since))
          local bucket = #bounds + 1
          for i, bound in ipairs(bounds) do
            if took <= bound then bucket = i; break end
          end
          redis.call('HINCRBY', KEYS[4], 'b' .. bucket, 1)
          redis.call('HINCRBY', KEYS[4], 'count', 1)
          redis.call('HINCRBYFLOAT', KEYS[4], 'sum', string.format('%.6f', took))
        end
      end
    end
  end
  return applied
end
""".replace("FINISHED", ", ".join(f"['{kind}'] = true" for kind in FINISHED_EVENTS))
METRIC_KEYS = [EVENTS_STREAM, TOTALS, SUBMITTED_AT, LATENCY]

# KEYS: METRIC_KEYS. ARGV: group, JSON [[id, type, job, at, credits]], JSON bucket bounds.
_APPLY = APPLY_FUNCTIONS + """
return apply_rows(ARGV[1], cjson.decode(ARGV[2]), cjson.decode(ARGV[3]))
"""


class ApiCallCounter:
    """Counts every API call by action and outcome (`ok` or the error's code). Inside
    `deferred()` a thread's counts wait for `queue_into`: the limiter sends them with the
    write that frees the call's slot, one round trip instead of two per call."""

    def __init__(self, client: redis.Redis) -> None:
        self.redis = client
        self._local = threading.local()

    def record(self, action: str, outcome: str) -> None:
        pending: list[str] | None = getattr(self._local, "pending", None)
        if pending is None:
            self.redis.hincrby(API_CALLS, f"{action} {outcome}", 1)
        else:
            pending.append(f"{action} {outcome}")

    @contextmanager
    def deferred(self) -> Iterator[None]:
        """Keep this thread's counts for queue_into; any left at the end are sent then."""
        self._local.pending = []
        try:
            yield
        finally:
            left, self._local.pending = self._local.pending, None
            if left:
                pipe = self.redis.pipeline(transaction=False)
                self._queue(pipe, left)
                pipe.execute()

    def queue_into(self, pipe: Pipeline) -> None:
        """Queue this thread's waiting counts on pipe."""
        pending: list[str] | None = getattr(self._local, "pending", None)
        if pending:
            self._queue(pipe, pending)
            pending.clear()

    @staticmethod
    def _queue(pipe: Pipeline, names: list[str]) -> None:
        for name in names:
            pipe.hincrby(API_CALLS, name, 1)

    def read(self) -> dict[tuple[str, str], int]:
        raw: dict[str, str] = self.redis.hgetall(API_CALLS)  # type: ignore[assignment]
        return {tuple(name.split(" ", 1)): int(n) for name, n in raw.items()  # type: ignore[misc]
                if " " in name}


def apply_events(client: redis.Redis, group: str, entries: Sequence[Entry]) -> int:
    """Acknowledge these entries for `group` and fold each into the totals (once: an entry
    already acknowledged changes nothing). Returns how many were applied."""
    call = apply_events_call(client, group, entries)
    return int(run_scripts(client, [call])[0]) if call else 0


def apply_events_call(client: redis.Redis, group: str,
                      entries: Sequence[Entry]) -> ScriptCall | None:
    """apply_events as a script call, to send with others (tasks/store/scripts.py); None
    when there is nothing to apply."""
    rows = [[entry_id, _kind(fields), fields.get("job_id", ""), fields.get("at", "0"),
             fields.get("credits", "")] for entry_id, fields in entries]
    if not rows:
        return None
    return _apply_script(client), METRIC_KEYS, [group, json.dumps(rows), BOUNDS_JSON]


@lru_cache(maxsize=8)
def _apply_script(client: redis.Redis) -> Script:
    return client.register_script(_APPLY)


def _kind(fields: dict[str, str]) -> str:
    kind = fields.get("type", "")
    return kind if kind == "job.submitted" or kind in FINISHED_EVENTS else ""


@dataclass(frozen=True)
class EventTotals:
    finished: dict[str, int] = field(default_factory=dict)  # event type -> jobs
    credits: float = 0.0
    latency_buckets: tuple[int, ...] = ()  # per bucket of LATENCY_BUCKETS_S, then +Inf
    latency_sum_s: float = 0.0
    latency_count: int = 0
    expiring_soon: int = 0  # submitted jobs whose results the API deletes within the hour


def read_event_totals(client: redis.Redis, now: float, within_s: float = 3600.0) -> EventTotals:
    pipe = client.pipeline(transaction=False)
    pipe.hgetall(TOTALS)
    pipe.hgetall(LATENCY)
    pipe.zcount(SUBMITTED_AT, "-inf", now - (API_RESULT_TTL_S - within_s))
    totals, latency, expiring = pipe.execute()
    buckets = tuple(int(latency.get(f"b{i}", 0)) for i in range(1, len(LATENCY_BUCKETS_S) + 2))
    return EventTotals(
        finished={kind: int(totals.get(kind, 0)) for kind in FINISHED_EVENTS},
        credits=float(totals.get("credits", 0.0)),
        latency_buckets=buckets,
        latency_sum_s=float(latency.get("sum", 0.0)),
        latency_count=int(latency.get("count", 0)),
        expiring_soon=int(expiring),
    )


def oldest_open_age_s(client: redis.Redis, now: float, sample: int = 100) -> float:
    """Seconds since the oldest open job was created, among the `sample` open jobs that have
    waited longest since their last change (0 when none is open)."""
    ids: list[str] = client.zrange(OPEN_JOBS, 0, sample - 1)  # type: ignore[assignment]
    if not ids:
        return 0.0
    pipe = client.pipeline(transaction=False)
    for job_id in ids:
        pipe.hget(job_key(job_id), "created_at")
    created = [float(c) for c in pipe.execute() if c]
    return max(0.0, now - min(created)) if created else 0.0
