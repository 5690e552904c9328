"""Idempotency-Key: a retried POST with the same key and body gets the same jobs and queues
nothing new; the same key with another body is refused. Keys are scoped per token and kept
CUTOUT_SERVE_IDEMPOTENCY_TTL_S.

The record holds the job ids before anything is queued, so a request that died half-way is
finished by its retry under the same ids (the ledger creates a job once; a repeated message for
a job finds it claimed and pays nothing).
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass
from typing import Any

import redis

__all__ = ["IdempotencyStore", "KeyReused", "Plan", "fingerprint"]

PREFIX = "cutout:idempotency"


class KeyReused(Exception):
    """The key was used with another body (answered 422)."""


@dataclass(frozen=True)
class Plan:
    """What one POST queues: every check passed, the job ids chosen."""

    batch: str
    output_dir: str | None
    params: dict[str, Any]
    webhook_url: str | None
    jobs: list[tuple[str, str]]  # (job id, reference)
    force: bool = False  # pay even for a cutout made before (docs/costs.md)


def fingerprint(body: dict[str, Any]) -> str:
    return hashlib.sha256(json.dumps(body, sort_keys=True, default=str).encode()).hexdigest()


class IdempotencyStore:
    def __init__(self, client: redis.Redis, ttl_s: int) -> None:
        self.redis = client
        self.ttl_s = ttl_s

    def _key(self, scope: str, key: str) -> str:
        return f"{PREFIX}:{scope}:{hashlib.sha256(key.encode()).hexdigest()}"

    def find(self, scope: str, key: str, body_print: str) -> tuple[Plan, bool] | None:
        """The plan recorded under this key and whether it was queued in full; None when the
        key is new. Raises KeyReused when it came with another body."""
        raw = self.redis.get(self._key(scope, key))
        if raw is None:
            return None
        record = json.loads(raw)
        if record["fingerprint"] != body_print:
            raise KeyReused("this Idempotency-Key was used with another body")
        plan = record["plan"]
        plan["jobs"] = [tuple(job) for job in plan["jobs"]]
        return Plan(**plan), bool(record["done"])

    def reserve(self, scope: str, key: str, body_print: str, plan: Plan) -> bool:
        """Record the plan before queueing it; False when another request took the key first."""
        record = {"fingerprint": body_print, "plan": asdict(plan), "done": False}
        return bool(self.redis.set(self._key(scope, key), json.dumps(record), nx=True,
                                   ex=self.ttl_s))

    def done(self, scope: str, key: str, body_print: str, plan: Plan) -> None:
        record = {"fingerprint": body_print, "plan": asdict(plan), "done": True}
        self.redis.set(self._key(scope, key), json.dumps(record), keepttl=True)
