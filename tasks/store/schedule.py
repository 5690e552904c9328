"""Due schedules: SUBMITTED jobs by the time their task is next due to be polled, and
finished ones by the time their results are due to be collected.

Jobs are added by the ledger's transitions (atomically with the state change). A poller or a
collector claims up to N due jobs at once by pushing their due time a lease ahead, so two never
work on the same job and one that dies only delays its jobs by the lease.
"""

from __future__ import annotations

from collections.abc import Sequence

import redis
from redis.client import Pipeline

from tasks.store.scripts import queue_script

__all__ = ["Claimed", "DueSchedule", "TickMarker"]

Claimed = tuple[str, dict[str, str]]  # a claimed job's id, and the fields read with the claim

# KEYS: schedule. ARGV: limit, lease seconds, job key prefix, then field names. Claims up to
# `limit` due ids by pushing their due time a lease ahead. One element comes before the ids:
# '' when some were claimed, else the seconds until the earliest is due ('-1' when the schedule
# is empty), so that an idle look is one call; each id is followed by the values of the named
# fields of its job's hash (nil for a missing one), so that the claimer need not read them in
# another.
_CLAIM_OR_WAIT = """
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1000000
local ids = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', now, 'LIMIT', 0, tonumber(ARGV[1]))
if #ids == 0 then
  local first = redis.call('ZRANGE', KEYS[1], 0, 0, 'WITHSCORES')
  if #first == 0 then return {'-1'} end
  return {string.format('%.6f', math.max(0, tonumber(first[2]) - now))}
end
local out = {''}
for _, id in ipairs(ids) do
  redis.call('ZADD', KEYS[1], now + tonumber(ARGV[2]), id)
  table.insert(out, id)
  if #ARGV > 3 then
    local values = redis.call('HMGET', ARGV[3] .. id, unpack(ARGV, 4))
    for i = 1, #ARGV - 3 do table.insert(out, values[i]) end
  end
end
return out
"""

# KEYS: schedule. ARGV: delay seconds, job ids... Moves existing members only (XX).
_RESCHEDULE = """
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1000000
for i = 2, #ARGV do redis.call('ZADD', KEYS[1], 'XX', now + tonumber(ARGV[1]), ARGV[i]) end
return #ARGV - 1
"""

# KEYS: schedule. Returns {count due now, seconds until the earliest due (-1 when empty)}.
_STATUS = """
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1000000
local due = redis.call('ZCOUNT', KEYS[1], '-inf', now)
local first = redis.call('ZRANGE', KEYS[1], 0, 0, 'WITHSCORES')
if #first == 0 then return {due, '-1'} end
return {due, string.format('%.6f', math.max(0, tonumber(first[2]) - now))}
"""


class DueSchedule:
    """Claims, reschedules and inspects the due times in one sorted set."""

    def __init__(self, client: redis.Redis, key: str) -> None:
        self.redis = client
        self.key = key
        self._reschedule = client.register_script(_RESCHEDULE)
        self._status = client.register_script(_STATUS)
        self._claim_or_wait = client.register_script(_CLAIM_OR_WAIT)

    def claim_due(self, limit: int, lease_s: float) -> list[str]:
        """Up to `limit` due ids, each this caller's for lease_s."""
        claimed, _ = self.claim_or_wait(limit, lease_s)
        return [job_id for job_id, _ in claimed]

    def claim_or_wait(self, limit: int, lease_s: float, key_prefix: str = "",
                      fields: Sequence[str] = ()) -> tuple[list[Claimed], float | None]:
        """(claim_due's jobs, None), or when none is due ([], seconds until the earliest is,
        or None when nothing waits): one call. Each job comes with the `fields` of the hash
        `key_prefix` + its id ({field: value}, missing fields left out)."""
        wait, *flat = self._claim_or_wait(keys=[self.key],
                                          args=[limit, lease_s, key_prefix, *fields])
        if not flat:
            return [], None if float(wait) < 0 else float(wait)
        step = 1 + len(fields)
        return [(str(flat[i]), {f: v for f, v in zip(fields, flat[i + 1:i + step], strict=True)
                                if v is not None}) for i in range(0, len(flat), step)], None

    def reschedule(self, job_ids: list[str], delay_s: float) -> None:
        if job_ids:
            self._reschedule(keys=[self.key], args=[delay_s, *job_ids])

    def remove(self, job_ids: list[str]) -> None:
        if job_ids:
            self.redis.zrem(self.key, *job_ids)

    def status(self) -> tuple[int, float | None]:
        """(jobs due now, seconds until the earliest is due or None when nothing waits)."""
        due, first = self._status(keys=[self.key])
        return int(due), None if float(first) < 0 else float(first)

    def size(self) -> int:
        return int(self.redis.zcard(self.key))


TICK_KEY = "cutout:poll:tick"

# The marker holds "<tick id> <planned unix time>" and expires on its own if its loop dies.
# KEYS: marker. ARGV: owner that may be replaced ('' = none), new id, delay s, ttl ms,
# slack s, grace s. Sets the new owner if the marker is free, held by ARGV[1], or (ARGV[1] ==
# '') held by a tick planned more than `slack` later than this one would run or overdue by
# more than `grace` (its worker probably died; if not, it finds itself stale and stops).
_TAKE = """
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1000000
local at = now + tonumber(ARGV[3])
local cur = redis.call('GET', KEYS[1])
if cur then
  local id, cur_at = string.match(cur, '^(%S+) (%S+)$')
  local mine = ARGV[1] ~= '' and id == ARGV[1]
  local later = tonumber(cur_at) > at + tonumber(ARGV[5])
  local overdue = tonumber(cur_at) < now - tonumber(ARGV[6])
  if not mine and not (ARGV[1] == '' and (later or overdue)) then return 0 end
end
redis.call('SET', KEYS[1], ARGV[2] .. ' ' .. string.format('%.6f', at), 'PX', ARGV[4])
return 1
"""

_RELEASE = """
local cur = redis.call('GET', KEYS[1])
if cur and string.match(cur, '^(%S+) ') == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
"""


# KEYS: marker. Returns {tick id, seconds until it is planned (negative: overdue)} or {}.
_PEEK = """
local cur = redis.call('GET', KEYS[1])
if not cur then return {} end
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1000000
local id, at = string.match(cur, '^(%S+) (%S+)$')
return {id, string.format('%.6f', tonumber(at) - now)}
"""


class TickMarker:
    """When the next poll round is due, and who runs the loop: one round at a time holds
    this marker (a poller thread of one worker)."""

    def __init__(self, client: redis.Redis) -> None:
        self.redis = client
        self._take = client.register_script(_TAKE)
        self._release = client.register_script(_RELEASE)
        self._peek = client.register_script(_PEEK)

    def start(self, tick_id: str, delay_s: float, ttl_s: float, slack_s: float = 0.5,
              grace_s: float = 10.0, *, pipe: Pipeline | None = None) -> bool:
        """Become the poll loop, running in delay_s, unless a loop already runs that soon
        (a loop planned later, or overdue by grace_s, is replaced: its message, if it ever
        runs, finds itself stale). With `pipe`, only queued on it (returns False)."""
        return self._run("", tick_id, delay_s, ttl_s, slack_s, grace_s, pipe=pipe)

    def owns_or_adopts(self, tick_id: str, ttl_s: float) -> bool:
        """True when tick_id holds the marker (taking it if the loop had died)."""
        return self._run(tick_id, tick_id, 0.0, ttl_s) or self._free_taken(tick_id, ttl_s)

    def hand_over(self, old: str, new: str, delay_s: float, ttl_s: float) -> bool:
        return self._run(old, new, delay_s, ttl_s)

    def peek(self) -> tuple[str, float] | None:
        """(the planned tick, seconds until it is due, negative when overdue), or None when
        no round is planned."""
        found = self._peek(keys=[TICK_KEY])
        return (str(found[0]), float(found[1])) if found else None

    def release(self, tick_id: str) -> None:
        self._release(keys=[TICK_KEY], args=[tick_id])

    def _free_taken(self, tick_id: str, ttl_s: float) -> bool:
        value = f"{tick_id} 0"
        return bool(self.redis.set(TICK_KEY, value, nx=True, px=int(ttl_s * 1000)))

    def _run(self, old: str, new: str, delay_s: float, ttl_s: float, slack_s: float = 0.0,
             grace_s: float = 1e9, *, pipe: Pipeline | None = None) -> bool:
        args: list[str | float] = [old, new, delay_s, int(ttl_s * 1000), slack_s, grace_s]
        if pipe is not None:
            queue_script(pipe, self._take, [TICK_KEY], args)
            return False
        return bool(self._take(keys=[TICK_KEY], args=args))
