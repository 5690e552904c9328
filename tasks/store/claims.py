"""Claiming a job for submission: the step that makes duplicate messages harmless.

One Lua script looks at the job and decides, atomically, whether this message may call the
API. Only a job that is ACCEPTED (or SUBMITTING with an expired lease and no call started) is
claimed; anything else tells the caller what to do instead, without an API call. A claim has
an owner (one per attempt) and a short lease that its process renews while it lives
(`tasks/store/leases.py`), so a dead worker's claims free within seconds. The call itself
starts only through `begin_call`, which checks that the claim is still this owner's: a process
that stalled past its lease, while another took the job, cannot pay a second time.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from typing import Literal

import redis
from redis.commands.core import Script

from tasks.store.durability import Durability
from tasks.store.ledger import LEASES, OPEN_JOBS, Ledger, job_key
from tasks.store.records import JobRecord, JobState

__all__ = ["Claim", "begin_call", "claim"]

Verdict = Literal["claimed", "persist", "busy", "unknown", "done", "missing"]

# KEYS: job hash, open-jobs index, lease index. ARGV: lease seconds, owner.
# Returns {verdict, detail} (claimed: and the job's fields, so the caller reads it in the same
# round trip): claimed; persist (TaskUID known); busy (seconds left on another
# worker's lease); unknown (a call started, its lease ran out, no TaskUID); done (state);
# missing.
_CLAIM = """
local f = redis.call('HMGET', KEYS[1], 'state', 'lease_until', 'call_started_at', 'task_uid',
                     'batch')
local state = f[1]
if not state then return {'missing', ''} end
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1000000
local lease = tonumber(f[2]) or 0
local started = f[3] and f[3] ~= ''
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

# KEYS: job hash. ARGV: owner. Marks the call as started (the proof that a crash from here on
# may have been paid for) if the claim is still this owner's and no call started yet.
_BEGIN_CALL = """
local f = redis.call('HMGET', KEYS[1], 'state', 'lease_owner', 'call_started_at')
if f[1] ~= 'SUBMITTING' or f[2] ~= ARGV[1] or (f[3] and f[3] ~= '') then return 0 end
local t = redis.call('TIME')
redis.call('HSET', KEYS[1], 'call_started_at',
           string.format('%.6f', tonumber(t[1]) + tonumber(t[2]) / 1000000))
return 1
"""


@dataclass(frozen=True)
class Claim:
    verdict: Verdict
    task_uid: str = ""
    busy_for_s: float = 0.0
    state: JobState | None = None
    record: JobRecord | None = None  # claimed: the job as the claim left it


@lru_cache(maxsize=8)
def _scripts(client: redis.Redis) -> tuple[Script, Script]:
    """The scripts, registered once per client (not on every claim)."""
    return client.register_script(_CLAIM), client.register_script(_BEGIN_CALL)


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
    script(keys=[job_key(job_id)], args=[owner], client=pipe)
    durability.wait_on(pipe)
    return bool(pipe.execute()[0])
