"""The same-cutout index: content key -> the job that pays for that cutout.

A content key is the SHA-256 of the image bytes and every option that changes the result
(`content_key`). One Lua script looks the key up and claims it in the same step, so two jobs
with the same key, on any workers, never both decide to pay: the first owns the key, the
others wait for it and reuse its files. An owner that failed (or vanished) hands the key to
the first job that looks next. The keys live in the ledger's Redis (AOF: they survive a
restart) and expire after CUTOUT_DEDUPE_TTL_S.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal

import redis

__all__ = ["DedupeIndex", "Match", "content_key", "dedupe_key"]

Verdict = Literal["pay", "reuse", "wait"]


def content_key(image: bytes, params: Mapping[str, Any]) -> str:
    """What makes two cutouts the same: the exact image bytes and the request's options
    (by API name, as signed), in a canonical order."""
    digest = hashlib.sha256()
    digest.update(json.dumps(dict(params), sort_keys=True, separators=(",", ":")).encode())
    digest.update(b"\0")
    digest.update(image)
    return digest.hexdigest()


def dedupe_key(key: str) -> str:
    return f"cutout:dedupe:{key}"


# KEYS: index entry. ARGV: job id, ttl seconds.
# Returns {verdict, owner}: pay (this job owns the key now), reuse (the owner SUCCEEDED),
# wait (the owner is still on its way).
_CHECK = """
local owner = redis.call('GET', KEYS[1])
if owner and owner ~= ARGV[1] then
  local state = redis.call('HGET', 'cutout:job:' .. owner, 'state')
  if state == 'SUCCEEDED' then return {'reuse', owner} end
  if state and state ~= 'FAILED' and state ~= 'NEEDS_RECONCILIATION' then
    return {'wait', owner}
  end
end
redis.call('SET', KEYS[1], ARGV[1], 'EX', ARGV[2])
return {'pay', ARGV[1]}
"""

# KEYS: index entry. ARGV: stale owner, job id, ttl. Takes the key over from an owner whose
# files are gone, unless another job did so first. Returns 1 when taken.
_TAKE_OVER = """
if redis.call('GET', KEYS[1]) ~= ARGV[1] then return 0 end
redis.call('SET', KEYS[1], ARGV[2], 'EX', ARGV[3])
return 1
"""

# KEYS: index entry. ARGV: job id. Lets go of a key this job owns (a job that will not pay
# after all: forced elsewhere, or failed before its call).
_LET_GO = """
if redis.call('GET', KEYS[1]) == ARGV[1] then redis.call('DEL', KEYS[1]) return 1 end
return 0
"""


@dataclass(frozen=True)
class Match:
    verdict: Verdict
    owner: str


class DedupeIndex:
    """The index, shared by every worker through Redis."""

    def __init__(self, client: redis.Redis, ttl_s: int) -> None:
        self.redis = client
        self.ttl_s = ttl_s
        self._check = client.register_script(_CHECK)
        self._take_over = client.register_script(_TAKE_OVER)
        self._let_go = client.register_script(_LET_GO)

    def check(self, key: str, job_id: str) -> Match:
        """Claim the key for job_id unless a live or finished job owns it."""
        verdict, owner = self._check(keys=[dedupe_key(key)], args=[job_id, self.ttl_s])
        return Match(verdict, owner)

    def peek(self, key: str) -> str | None:
        """The job that owns the key, if any (the dry run's look, which claims nothing)."""
        return self.redis.get(dedupe_key(key))  # type: ignore[return-value]

    def take_over(self, key: str, stale_owner: str, job_id: str) -> bool:
        return bool(self._take_over(keys=[dedupe_key(key)],
                                    args=[stale_owner, job_id, self.ttl_s]))

    def let_go(self, key: str, job_id: str) -> None:
        self._let_go(keys=[dedupe_key(key)], args=[job_id])
