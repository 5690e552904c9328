"""Credit budgets: per PublicKey per UTC day, and per batch, kept in the ledger's Redis.

Every call reserves its credits first, in one Lua script that checks both budgets and books
the reservation on the job (so a second attempt of the same job books nothing more); the
reservation is settled with the task's ConsumeApiPoint once the API reports it, or released
when the call was surely not taken. Spent plus reserved never passes a budget, however many
workers race. A budget of 0 (or none) means no limit.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any, Literal

import redis

from tasks.store.ledger import batch_key, job_key
from tasks.store.scripts import ScriptCall

__all__ = ["HELD_JOBS", "Budgets", "Reservation", "Spending", "batch_budget_key", "day_key",
           "utc_day"]

# Sorted set of the jobs ON_HOLD (over a budget), by when they were held.
HELD_JOBS = "cutout:held"
DAY_KEPT_S = 8 * 24 * 3600  # a day's spending stays visible for a week


def utc_day(unix_s: float | None = None) -> int:
    """Days since the epoch, UTC: the daily budget's period."""
    return int((time.time() if unix_s is None else unix_s) // 86400)


def daily_limit_key(public_key: str) -> str:
    """String: the daily budget `cutout budget --daily` set (overrides the setting)."""
    return f"cutout:budget:daily:{public_key}"


def day_key(public_key: str, day: int) -> str:
    """Hash: spent, reserved credits of one PublicKey on one UTC day."""
    return f"cutout:budget:day:{public_key}:{day}"


def batch_budget_key(batch: str) -> str:
    """Hash: limit, spent, reserved credits of one batch."""
    return f"{batch_key(batch)}:budget"


# KEYS: job hash, daily limit key. ARGV: day key prefix, default daily limit, credits.
# Returns {verdict, why}: ok (reserved now or before), hold (daily | batch), missing.
_RESERVE = """
if redis.call('EXISTS', KEYS[1]) == 0 then return {'missing', ''} end
local booked = redis.call('HGET', KEYS[1], 'budget_reserved')
if booked and booked ~= '' then return {'ok', ''} end
local t = redis.call('TIME')
local day = ARGV[1] .. math.floor(tonumber(t[1]) / 86400)
local credits = tonumber(ARGV[3])
local limit = tonumber(redis.call('GET', KEYS[2]) or ARGV[2]) or 0
local function used(key)
  return tonumber(redis.call('HGET', key, 'spent') or '0')
       + tonumber(redis.call('HGET', key, 'reserved') or '0')
end
if limit > 0 and used(day) + credits > limit + 1e-9 then return {'hold', 'daily'} end
local batch = redis.call('HGET', KEYS[1], 'batch')
local bkey = ''
if batch and batch ~= '' then
  bkey = 'cutout:batch:' .. batch .. ':budget'
  local blimit = tonumber(redis.call('HGET', bkey, 'limit') or '0') or 0
  if blimit > 0 and used(bkey) + credits > blimit + 1e-9 then return {'hold', 'batch'} end
  redis.call('HINCRBYFLOAT', bkey, 'reserved', credits)
end
redis.call('HINCRBYFLOAT', day, 'reserved', credits)
redis.call('EXPIRE', day, tonumber(ARGV[4]))
redis.call('HSET', KEYS[1], 'budget_reserved', ARGV[3], 'budget_day', day,
           'budget_batch', bkey)
return {'ok', ''}
"""

# KEYS: job hash. ARGV: credits spent ('' to release the reservation unspent).
# Settles the job's reservation once (the fields go with it); returns 1 when settled.
_SETTLE = """
local f = redis.call('HMGET', KEYS[1], 'budget_reserved', 'budget_day', 'budget_batch')
if not f[1] or f[1] == '' then return 0 end
local spent = tonumber(ARGV[1] ~= '' and ARGV[1] or '0')
for _, key in ipairs({f[2], f[3]}) do
  if key and key ~= '' then
    redis.call('HINCRBYFLOAT', key, 'reserved', -tonumber(f[1]))
    if spent > 0 then redis.call('HINCRBYFLOAT', key, 'spent', spent) end
  end
end
redis.call('HDEL', KEYS[1], 'budget_reserved', 'budget_day', 'budget_batch')
return 1
"""


@dataclass(frozen=True)
class Reservation:
    verdict: Literal["ok", "hold", "missing"]
    why: str = ""  # daily | batch


@dataclass(frozen=True)
class Spending:
    limit: float  # 0: no limit
    spent: float
    reserved: float

    @property
    def room(self) -> float:
        return float("inf") if self.limit <= 0 else self.limit - self.spent - self.reserved


class Budgets:
    """The budgets of one PublicKey, and of every batch, shared by every worker."""

    def __init__(self, client: redis.Redis, public_key: str, default_daily: float) -> None:
        self.redis = client
        self.public_key = public_key
        self.default_daily = default_daily
        self._reserve = client.register_script(_RESERVE)
        self._settle = client.register_script(_SETTLE)

    def reserve(self, job_id: str, credits: float) -> Reservation:
        verdict, why = self._reserve(
            keys=[job_key(job_id), daily_limit_key(self.public_key)],
            args=[f"cutout:budget:day:{self.public_key}:", self.default_daily, credits,
                  DAY_KEPT_S])
        return Reservation(verdict, why)

    def settle(self, job_id: str, spent: float | None) -> bool:
        """Spent credits replace the job's reservation; None releases it (no call was
        taken). Once per reservation."""
        script, keys, args = self.settle_call(job_id, spent)
        return bool(script(keys=keys, args=args))

    def settle_call(self, job_id: str, spent: float | None) -> ScriptCall:
        """`settle` as a script call, to send with others in one round trip."""
        return (self._settle, [job_key(job_id)], ["" if spent is None else repr(float(spent))])

    def daily_limit(self) -> float:
        raw = self.redis.get(daily_limit_key(self.public_key))
        return self.default_daily if raw is None else float(str(raw))

    def set_daily(self, credits: float) -> None:
        self.redis.set(daily_limit_key(self.public_key), repr(float(credits)))

    def today(self) -> Spending:
        day = utc_day(float(self.redis.time()[0]))
        return Spending(self.daily_limit(), *self._used(day_key(self.public_key, day)))

    def batch(self, batch: str) -> Spending:
        raw: dict[str, str] = self.redis.hgetall(batch_budget_key(batch))  # type: ignore[assignment]
        return Spending(float(raw.get("limit") or 0), *self._used(batch_budget_key(batch)))

    def set_batch(self, batch: str, credits: float) -> None:
        self.redis.hset(batch_budget_key(batch), "limit", repr(float(credits)))

    def batches(self) -> list[str]:
        """The batches that have a budget (or spending under one)."""
        names = []
        for key in self.redis.scan_iter("cutout:batch:*:budget", count=1000):
            names.append(str(key).removeprefix("cutout:batch:").removesuffix(":budget"))
        return sorted(names)

    def _used(self, key: str) -> tuple[float, float]:
        values: list[Any] = self.redis.hmget(key, ["spent", "reserved"])
        return float(values[0] or 0), max(0.0, float(values[1] or 0))
