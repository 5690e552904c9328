"""The job ledger: one Redis hash per job (the store of record), a batch index, and the
events stream. Every state change is one Lua script, so the check, the write, the batch
counters and the event happen together or not at all.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import redis
from redis.commands.core import Script

from tasks.store.records import JobRecord, JobState
from tasks.store.scripts import PipeHook, ScriptCall, queue_script

__all__ = ["COLLECT_SCHEDULE", "ERROR_FIELDS", "EVENTS_STREAM", "LEASES", "OPEN_JOBS",
           "POLL_SCHEDULE", "RECONCILE_JOBS", "STATE_COUNTS", "Ledger", "job_key", "record_of",
           "redis_now", "transition_outcome"]

PREFIX = "cutout"
EVENTS_STREAM = f"{PREFIX}:events"
EVENTS_MAXLEN = 1_000_000  # approximate; consumers are expected to keep up well within this
# Sorted set of SUBMITTED job ids by the (Redis clock) time their task is due to be polled.
POLL_SCHEDULE = f"{PREFIX}:poll:due"
# Sorted set of job ids whose task finished at the API, by the time their results are due to
# be collected (the collectors' work list; an entry in progress is pushed a lease ahead).
COLLECT_SCHEDULE = f"{PREFIX}:collect:due"
# Sorted set of the jobs not yet in a terminal state, by the time of their last change: the
# sweeper's index of jobs that may have lost their message.
OPEN_JOBS = f"{PREFIX}:open"
# Sorted set of the jobs in NEEDS_RECONCILIATION, by when they got there (`cutout reconcile`).
RECONCILE_JOBS = f"{PREFIX}:reconcile"
# Hash: state -> number of jobs in it, over every job (batch or not), kept by every script
# that changes a state; what `cutout serve`'s metrics report.
STATE_COUNTS = f"{PREFIX}:counts"
# Sorted set of claimed jobs by the end of their lease (kept by the claim and its renewals;
# entries of jobs that moved on are dropped by the sweeper once their lease is over).
LEASES = f"{PREFIX}:leases"
# Why a job ended: written by fail(), cleared when the job moves on again.
ERROR_FIELDS = ("error_stage", "error_code", "error_field", "error_message")


def job_key(job_id: str) -> str:
    return f"{PREFIX}:job:{job_id}"


def redis_now(client: redis.Redis) -> float:
    """Redis's clock (unix seconds), the one every process shares."""
    seconds, micros = client.time()
    return float(seconds) + float(micros) / 1e6


def batch_key(batch: str) -> str:
    return f"{PREFIX}:batch:{batch}"


def batch_counts_key(batch: str) -> str:
    return f"{PREFIX}:batch:{batch}:counts"


# KEYS: job hash, open-jobs index. ARGV: batch set key, batch counts key, job id, then flat
# field/value pairs (state among them).
_CREATE = """
if redis.call('EXISTS', KEYS[1]) == 1 then return 0 end
redis.call('HSET', KEYS[1], unpack(ARGV, 4))
if ARGV[1] ~= '' then
  redis.call('SADD', ARGV[1], ARGV[3])
  redis.call('HINCRBY', ARGV[2], 'ACCEPTED', 1)
end
redis.call('HINCRBY', 'cutout:counts', 'ACCEPTED', 1)
local t = redis.call('TIME')
redis.call('ZADD', KEYS[2], tonumber(t[1]) + tonumber(t[2]) / 1000000, ARGV[3])
return 1
"""

# KEYS: job hash, events stream, open-jobs index.
# ARGV: allowed states (comma list), new state, fields JSON, clear-fields JSON, event type,
#       event fields JSON, stream maxlen, field to increment ('' for none), schedule moves JSON
#       ([[sorted set key, delay seconds or false to remove], ...]), expected fields JSON
#       ({field: value} that must hold, '' meaning unset).
# Returns {1, new state} or {0, current state} ('' when the job does not exist).
_TRANSITION = """
local state = redis.call('HGET', KEYS[1], 'state')
if not state then return {0, ''} end
local allowed = false
for s in string.gmatch(ARGV[1], '[^,]+') do
  if s == state then allowed = true end
end
if not allowed then return {0, state} end
for k, v in pairs(cjson.decode(ARGV[10])) do
  if (redis.call('HGET', KEYS[1], k) or '') ~= v then return {0, state} end
end
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1000000
local fields = cjson.decode(ARGV[3])
for k, v in pairs(fields) do
  if v == '__now__' then v = string.format('%.6f', now) end
  redis.call('HSET', KEYS[1], k, v)
end
for _, k in ipairs(cjson.decode(ARGV[4])) do redis.call('HDEL', KEYS[1], k) end
if ARGV[8] ~= '' then redis.call('HINCRBY', KEYS[1], ARGV[8], 1) end
redis.call('HSET', KEYS[1], 'state', ARGV[2], 'updated_at', string.format('%.6f', now))
local id = redis.call('HGET', KEYS[1], 'job_id')
if ARGV[2] == 'ACCEPTED' or ARGV[2] == 'SUBMITTING' or ARGV[2] == 'SUBMITTED' then
  redis.call('ZADD', KEYS[3], now, id)
else
  redis.call('ZREM', KEYS[3], id)
end
if ARGV[2] == 'NEEDS_RECONCILIATION' then
  redis.call('ZADD', 'cutout:reconcile', now, id)
elseif state == 'NEEDS_RECONCILIATION' then
  redis.call('ZREM', 'cutout:reconcile', id)
end
if state ~= ARGV[2] then
  redis.call('HINCRBY', 'cutout:counts', state, -1)
  redis.call('HINCRBY', 'cutout:counts', ARGV[2], 1)
end
local batch = redis.call('HGET', KEYS[1], 'batch')
if batch and batch ~= '' and state ~= ARGV[2] then
  local counts = 'cutout:batch:' .. batch .. ':counts'
  redis.call('HINCRBY', counts, state, -1)
  redis.call('HINCRBY', counts, ARGV[2], 1)
end
if ARGV[5] ~= '' then
  local ev = {'type', ARGV[5], 'job_id', id,
              'batch', batch or '', 'at', string.format('%.6f', now)}
  for k, v in pairs(cjson.decode(ARGV[6])) do
    table.insert(ev, k); table.insert(ev, v)
  end
  redis.call('XADD', KEYS[2], 'MAXLEN', '~', ARGV[7], '*', unpack(ev))
end
for _, move in ipairs(cjson.decode(ARGV[9])) do
  if move[2] then redis.call('ZADD', move[1], now + tonumber(move[2]), id)
  else redis.call('ZREM', move[1], id) end
end
return {1, ARGV[2]}
"""

class Ledger:
    """The store of record for jobs, on one Redis database."""

    def __init__(self, client: redis.Redis) -> None:
        self.redis = client
        self._create = client.register_script(_CREATE)
        self._transition = client.register_script(_TRANSITION)

    @classmethod
    def from_url(cls, url: str) -> Ledger:
        return cls(redis.Redis.from_url(url, decode_responses=True))

    def create(
        self,
        job_id: str,
        reference: str,
        options: Mapping[str, Any],
        *,
        batch: str | None = None,
        output_dir: str | None = None,
        webhook_url: str | None = None,
        force: bool = False,
    ) -> bool:
        """Record a new job as ACCEPTED; False (and no change) if the id already exists."""
        return bool(self._create_args(self.redis, job_id, reference, options, batch, output_dir,
                                      webhook_url, force))

    def create_many(self, jobs: Iterable[tuple[str, str]], options: Mapping[str, Any],
                    *, batch: str | None = None, output_dir: str | None = None,
                    webhook_url: str | None = None, force: bool = False) -> None:
        """Record many (job_id, reference) pairs in one round trip. `force`: the jobs pay
        even for a cutout made before (no reuse, docs/costs.md)."""
        pipe = self.redis.pipeline(transaction=False)
        shared = _shared_fields(options, batch, output_dir, webhook_url, force)
        set_key = batch_key(batch) if batch else ""
        counts = batch_counts_key(batch) if batch else ""
        for job_id, reference in jobs:
            self._create(keys=[job_key(job_id), OPEN_JOBS],
                         args=[set_key, counts, job_id, "job_id", job_id, "reference", reference,
                               *shared], client=pipe)
        pipe.execute()

    def _create_args(self, target: Any, job_id: str, reference: str, options: Mapping[str, Any],
                     batch: str | None, output_dir: str | None, webhook_url: str | None,
                     force: bool = False) -> Any:
        set_key = batch_key(batch) if batch else ""
        counts = batch_counts_key(batch) if batch else ""
        return self._create(keys=[job_key(job_id), OPEN_JOBS],
                            args=[set_key, counts, job_id, "job_id", job_id, "reference",
                                  reference, *_shared_fields(options, batch, output_dir,
                                                             webhook_url, force)], client=target)

    def get(self, job_id: str) -> JobRecord | None:
        raw: dict[str, str] = self.redis.hgetall(job_key(job_id))  # type: ignore[assignment]
        return record_of(raw)

    def get_many(self, job_ids: Iterable[str]) -> list[JobRecord | None]:
        pipe = self.redis.pipeline(transaction=False)
        for job_id in job_ids:
            pipe.hgetall(job_key(job_id))
        return [record_of(raw) for raw in pipe.execute()]

    def get_partial(self, job_id: str, names: Sequence[str]) -> JobRecord | None:
        """The job with only the fields `names` read (the others at their defaults, so a
        caller must name every field it uses); None as `get` would. Reads far less than
        `get` for a job with a long history."""
        return self.get_many_partial([job_id], names)[0]

    def get_many_partial(self, job_ids: Iterable[str],
                         names: Sequence[str]) -> list[JobRecord | None]:
        """`get_partial` of each job, in one round trip."""
        wanted = list(dict.fromkeys(["job_id", "state", *names]))
        pipe = self.redis.pipeline(transaction=False)
        for job_id in job_ids:
            pipe.hmget(job_key(job_id), wanted)
        found = [{k: v for k, v in zip(wanted, values, strict=True) if v is not None}
                 for values in pipe.execute()]
        return [record_of(raw) for raw in found]

    def transition(
        self,
        job_id: str,
        allowed: Iterable[JobState],
        new: JobState,
        *,
        fields: Mapping[str, Any] | None = None,
        clear: Iterable[str] = (),
        event: str = "",
        event_fields: Mapping[str, Any] | None = None,
        increment: str = "",
        poll_in_s: float | None = None,
        collect_in_s: float | None = None,
        unschedule: bool = False,
        expect: Mapping[str, Any] | None = None,
        index: tuple[str, bool] | None = None,
        also: PipeHook | None = None,
    ) -> tuple[bool, JobState | None]:
        """Move a job to `new` if it is in one of `allowed` and its fields hold the `expect`ed
        values ("" = unset), writing `fields` (the value "__now__" means Redis's clock) and
        emitting `event`; all in one step. `poll_in_s` / `collect_in_s` put the job on the poll
        or collect schedule that many seconds ahead (and off the other one); `unschedule` takes
        it off both. `index` = (sorted set, True to add the job by now | False to remove it).
        `also` queues more commands after the script, sent in the same round trip.

        Returns (done, state): the new state when done, else the current one (None if the
        job does not exist)."""
        script, keys, args = self.transition_call(
            job_id, allowed, new, fields=fields, clear=clear, event=event,
            event_fields=event_fields, increment=increment, poll_in_s=poll_in_s,
            collect_in_s=collect_in_s, unschedule=unschedule, expect=expect, index=index)
        return transition_outcome(self._run(script, keys, args, also))

    def transition_call(self, job_id: str, allowed: Iterable[JobState], new: JobState,
                        **options: Any) -> ScriptCall:
        """`transition` as a script call, to send with others in one round trip
        (tasks/store/scripts.py); its answer read with transition_outcome."""
        return (self._transition, [job_key(job_id), EVENTS_STREAM, OPEN_JOBS],
                _transition_args(allowed, new, **options))

    def _run(self, script: Script, keys: Sequence[Any], args: Sequence[Any],
             also: PipeHook | None) -> Any:
        """The script's answer; with `also`, the script and what `also` queues go in one
        round trip (a pipeline without MULTI: the script alone is atomic)."""
        if also is None:
            return script(keys=keys, args=args)
        pipe = self.redis.pipeline(transaction=False)
        queue_script(pipe, script, keys, args)
        also(pipe)
        return pipe.execute()[0]

    def fail(self, job_id: str, allowed: Iterable[JobState], stage: str, code: str,
             message: str, *, field: str | None = None, to: JobState = JobState.FAILED,
             expect: Mapping[str, Any] | None = None, **fields: Any) -> bool:
        """Record why a job ended (FAILED, or NEEDS_RECONCILIATION): stage, code, field and
        message on the record and on the stream; take it off the schedules."""
        error = {"error_stage": stage, "error_code": code, "error_field": field or "",
                 "error_message": message}
        event = "job.failed" if to is JobState.FAILED else "job.needs_reconciliation"
        done, _ = self.transition(
            job_id, allowed, to, fields={**fields, **error, "finished_at": "__now__"},
            clear=["lease_until", "lease_owner"], event=event, event_fields=error,
            unschedule=True, expect=expect)
        return done

    def state_counts(self) -> dict[str, int]:
        """Every job by state (states with none left out)."""
        raw: dict[str, str] = self.redis.hgetall(STATE_COUNTS)  # type: ignore[assignment]
        return {state: int(n) for state, n in raw.items() if int(n) > 0}

    def batch_ids(self, batch: str) -> list[str]:
        return sorted(self.redis.smembers(batch_key(batch)))  # type: ignore[arg-type]

    def batch_counts(self, batch: str) -> dict[str, int]:
        raw: dict[str, str] = self.redis.hgetall(batch_counts_key(batch))  # type: ignore[assignment]
        return {state: int(n) for state, n in raw.items() if int(n) > 0}

    def events(self, count: int = 10_000) -> list[dict[str, str]]:
        """The stream's entries, oldest first (for tests and tools; consumers use groups)."""
        entries: list[tuple[str, dict[str, str]]] = self.redis.xrange(  # type: ignore[assignment]
            EVENTS_STREAM, count=count)
        return [fields for _, fields in entries]


def _shared_fields(options: Mapping[str, Any], batch: str | None, output_dir: str | None,
                   webhook_url: str | None, force: bool = False) -> list[str]:
    """The field/value pairs every job of one enqueue call has alike (all but id and
    reference), flat."""
    now = f"{time.time():.6f}"
    fields = {
        "options": json.dumps(dict(options)), "batch": batch or "",
        "output_dir": output_dir or "", "state": JobState.ACCEPTED, "attempts": "0",
        "created_at": now, "updated_at": now,
    }
    if webhook_url:
        fields["webhook_url"] = webhook_url
    if force:
        fields["force"] = "1"
    return [item for pair in fields.items() for item in pair]


def transition_outcome(answer: Any) -> tuple[bool, JobState | None]:
    """(done, state) from the answer of a transition_call, as `transition` returns them."""
    done, state = answer
    return bool(done), JobState(state) if state else None


def _transition_args(
    allowed: Iterable[JobState], new: JobState, *, fields: Mapping[str, Any] | None = None,
    clear: Iterable[str] = (), event: str = "", event_fields: Mapping[str, Any] | None = None,
    increment: str = "", poll_in_s: float | None = None, collect_in_s: float | None = None,
    unschedule: bool = False, expect: Mapping[str, Any] | None = None,
    index: tuple[str, bool] | None = None,
) -> list[str]:
    moves = _schedule_moves(poll_in_s, collect_in_s, unschedule)
    if index is not None:
        moves.append([index[0], 0 if index[1] else False])
    return [
        ",".join(str(s) for s in allowed), str(new), _json_strings(fields or {}),
        json.dumps(list(clear)), event, _json_strings(event_fields or {}), str(EVENTS_MAXLEN),
        increment, json.dumps(moves),
        _json_strings(expect or {}),
    ]


def record_of(raw: Mapping[str, str]) -> JobRecord | None:
    """The record in a hash's fields as read (all or some of them), or None when they are
    not a whole job's (as `get` reads them)."""
    return JobRecord.from_hash(raw) if _whole(raw) else None


def _whole(raw: Mapping[str, str]) -> bool:
    """A job hash as create() writes it; a fragment (left by a write that a Redis crash
    separated from its job's creation) is no job."""
    return bool(raw) and "job_id" in raw and "state" in raw


def _schedule_moves(poll_in_s: float | None, collect_in_s: float | None,
                    unschedule: bool) -> list[list[Any]]:
    """The schedule changes of a transition: a job is on at most one of the two schedules."""
    if poll_in_s is not None:
        return [[POLL_SCHEDULE, poll_in_s], [COLLECT_SCHEDULE, False]]
    if collect_in_s is not None:
        return [[COLLECT_SCHEDULE, collect_in_s], [POLL_SCHEDULE, False]]
    if unschedule:
        return [[POLL_SCHEDULE, False], [COLLECT_SCHEDULE, False]]
    return []


def _str(value: Any) -> str:
    if isinstance(value, list | dict):
        return json.dumps(value)
    return "" if value is None else str(value)


def _json_strings(values: Mapping[str, Any]) -> str:
    return json.dumps({k: _str(v) for k, v in values.items()})
