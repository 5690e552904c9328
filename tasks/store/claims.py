"""Claiming a job for submission: the step that makes duplicate messages harmless.

One Lua script looks at the job and decides, atomically, whether this message may call the
API. Only a job that is ACCEPTED (or SUBMITTING with an expired lease and no call started) is
claimed; anything else tells the caller what to do instead, without an API call. A claim has
an owner (one per attempt) and a short lease that its process renews while it lives
(`tasks/store/leases.py`), so a dead worker's claims free within seconds. The call itself
starts only through `begin_call`, which checks that the claim is still this owner's: a process
that stalled past its lease, while another took the job, cannot pay a second time.

`begin_call` is recorded (durably) before the call waits for its limiter start; `mark_sent`
right before the request leaves. A claim whose lease lapsed after `begin_call` but before
`mark_sent` was never sent, and is claimed again instead of flagged, provided the mark could
not have been lost: Redis writes every acknowledged write to disk (`appendfsync always`), or
it is the same Redis run that recorded the start (same `run_id`). Otherwise (everysec with
WAITAOF, restarted since) the job is flagged as before.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from typing import Literal

import redis
from redis.commands.core import Script

from picpik.errors import CutoutError
from tasks.store.durability import Durability
from tasks.store.ledger import LEASES, OPEN_JOBS, Ledger, job_key
from tasks.store.records import JobRecord, JobState
from tasks.store.scripts import queue_script

__all__ = ["Claim", "ClaimLost", "begin_call", "claim", "mark_sent"]

Verdict = Literal["claimed", "persist", "busy", "unknown", "done", "missing"]

# KEYS: job hash, open-jobs index, lease index. ARGV: lease seconds, owner.
# Returns {verdict, detail} (claimed: and the job's fields, so the caller reads it in the same
# round trip): claimed; persist (TaskUID known); busy (seconds left on another
# worker's lease); unknown (a call started, its lease ran out, no TaskUID); done (state);
# missing.
_RUN_ID = """
local function run_id()
  return string.match(redis.call('INFO', 'server'), 'run_id:(%x+)')
end
"""

_CLAIM = _RUN_ID + """
local f = redis.call('HMGET', KEYS[1], 'state', 'lease_until', 'call_started_at', 'task_uid',
                     'batch', 'call_sent_at', 'call_run_id')
local state = f[1]
if not state then return {'missing', ''} end
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1000000
local lease = tonumber(f[2]) or 0
-- A start never marked sent, recorded by this very Redis run (or by a Redis that writes every
-- mark to disk before acknowledging it, '*'): the request never left.
local run = f[7] or ''
local started = f[3] and f[3] ~= '' and ((f[6] and f[6] ~= '') or (run ~= '*' and run ~= run_id()))
local uid = f[4] or ''
if state == 'SUBMITTED' or (state == 'SUBMITTING' and uid ~= '') then return {'persist', uid} end
if state == 'SUBMITTING' and lease >= now then
  return {'busy', string.format('%.3f', lease - now)}
end
if state == 'SUBMITTING' and started then return {'unknown', ''} end
if state ~= 'ACCEPTED' and state ~= 'SUBMITTING' then return {'done', state} end
local id = redis.call('HGET', KEYS[1], 'job_id')
redis.call('HSET', KEYS[1], 'state', 'SUBMITTING', 'updated_at', string.format('%.6f', now),
           'lease_until', string.format('%.6f', now + tonumber(ARGV[1])),
           'lease_owner', ARGV[2])
redis.call('HINCRBY', KEYS[1], 'attempts', 1)
redis.call('HDEL', KEYS[1], 'call_started_at', 'call_run_id', 'call_sent_at')
redis.call('ZADD', KEYS[2], now, id)
redis.call('ZADD', KEYS[3], now + tonumber(ARGV[1]), id)
if state ~= 'SUBMITTING' then
  redis.call('HINCRBY', 'cutout:counts', state, -1)
  redis.call('HINCRBY', 'cutout:counts', 'SUBMITTING', 1)
end
if state ~= 'SUBMITTING' and f[5] and f[5] ~= '' then
  local counts = 'cutout:batch:' .. f[5] .. ':counts'
  redis.call('HINCRBY', counts, state, -1)
  redis.call('HINCRBY', counts, 'SUBMITTING', 1)
end
return {'claimed', '', redis.call('HGETALL', KEYS[1])}
"""

# KEYS: job hash. ARGV: owner, 1 when every acknowledged write is on disk (then a `mark_sent`
# survives a restart too, and the run is recorded as '*', any). Marks the call as started (the
# proof that a crash from here on may have been paid for) if the claim is still this owner's
# and no call started yet.
_BEGIN_CALL = _RUN_ID + """
local f = redis.call('HMGET', KEYS[1], 'state', 'lease_owner', 'call_started_at')
if f[1] ~= 'SUBMITTING' or f[2] ~= ARGV[1] or (f[3] and f[3] ~= '') then return 0 end
local t = redis.call('TIME')
redis.call('HSET', KEYS[1], 'call_started_at',
           string.format('%.6f', tonumber(t[1]) + tonumber(t[2]) / 1000000),
           'call_run_id', ARGV[2] == '1' and '*' or run_id())
return 1
"""

# KEYS: job hash. ARGV: owner. The request leaves now (needs no durability: a Redis that
# restarts changes its run_id, and the claim then treats the call as possibly sent).
_MARK_SENT = """
local f = redis.call('HMGET', KEYS[1], 'state', 'lease_owner', 'call_started_at')
if f[1] ~= 'SUBMITTING' or f[2] ~= ARGV[1] or not f[3] or f[3] == '' then return 0 end
local t = redis.call('TIME')
redis.call('HSET', KEYS[1], 'call_sent_at',
           string.format('%.6f', tonumber(t[1]) + tonumber(t[2]) / 1000000))
return 1
"""


class ClaimLost(CutoutError):
    """This attempt's claim was taken over before its request left (the process stalled past
    its lease): the request must not be sent."""

    code = "claim_lost"


@dataclass(frozen=True)
class Claim:
    verdict: Verdict
    task_uid: str = ""
    busy_for_s: float = 0.0
    state: JobState | None = None
    record: JobRecord | None = None  # claimed: the job as the claim left it


@lru_cache(maxsize=8)
def _scripts(client: redis.Redis) -> tuple[Script, Script, Script]:
    """The scripts, registered once per client (not on every claim)."""
    return (client.register_script(_CLAIM), client.register_script(_BEGIN_CALL),
            client.register_script(_MARK_SENT))


def claim(ledger: Ledger, job_id: str, lease_s: float, owner: str) -> Claim:
    """Try to take the job for one submit attempt, as `owner`, holding a lease of lease_s."""
    verdict, detail, *fields = _scripts(ledger.redis)[0](
        keys=[job_key(job_id), OPEN_JOBS, LEASES], args=[lease_s, owner])
    if verdict == "claimed":
        flat = fields[0]
        return Claim("claimed", record=JobRecord.from_hash(dict(zip(flat[::2], flat[1::2],
                                                                    strict=True))))
    if verdict == "persist":
        return Claim("persist", task_uid=detail)
    if verdict == "busy":
        return Claim("busy", busy_for_s=float(detail))
    if verdict == "done":
        return Claim("done", state=JobState(detail))
    return Claim(verdict)


def begin_call(ledger: Ledger, job_id: str, owner: str, durability: Durability) -> bool:
    """Record that owner's call starts now, durably (on disk before this returns, where the
    server can promise it); False when the claim is no longer owner's."""
    script = _scripts(ledger.redis)[1]
    pipe = ledger.redis.pipeline(transaction=False)  # one connection: WAITAOF covers the write
    queue_script(pipe, script, [job_key(job_id)], [owner, int(durability.fsync_always)])
    durability.wait_on(pipe)
    return bool(pipe.execute()[0])


def mark_sent(ledger: Ledger, job_id: str, owner: str) -> None:
    """Record that owner's request leaves now; raises ClaimLost (send nothing) when the claim
    is no longer owner's."""
    if not _scripts(ledger.redis)[2](keys=[job_key(job_id)], args=[owner]):
        raise ClaimLost("the claim was taken over before the request left", job_id=job_id)
