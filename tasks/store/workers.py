"""Which broker messages each live worker holds: every worker writes the delivery tags of the
messages it holds (running, waiting for a process, or waiting for a countdown) every heartbeat,
under a key that expires after a few missed beats. A message that a worker took from the broker
and that no live worker holds any more was held by a worker that died (`tasks/upkeep.py`
gives it back to its queue at once, rather than after the broker's visibility timeout).
"""

from __future__ import annotations

from collections.abc import Iterable

import redis

__all__ = ["WorkerRegistry"]

WORKERS = "cutout:workers"


def _held_key(name: str) -> str:
    return f"cutout:worker:{name}:held"


class WorkerRegistry:
    """The live workers' held delivery tags, in Redis."""

    def __init__(self, client: redis.Redis) -> None:
        self.redis = client

    def beat(self, name: str, tags: Iterable[str], ttl_s: float) -> None:
        """This worker holds exactly `tags` now, and lives for at least ttl_s more."""
        key = _held_key(name)
        pipe = self.redis.pipeline(transaction=True)
        pipe.delete(key)
        pipe.sadd(key, "", *tags)  # "" keeps the key alive when nothing is held
        pipe.pexpire(key, int(ttl_s * 1000))
        pipe.sadd(WORKERS, name)
        pipe.execute()

    def held(self) -> set[str]:
        """Every delivery tag some live worker holds (workers gone quiet are forgotten)."""
        names: set[str] = self.redis.smembers(WORKERS)  # type: ignore[assignment]
        pipe = self.redis.pipeline(transaction=False)
        for name in names:
            pipe.smembers(_held_key(name))
        tags: set[str] = set()
        for name, members in zip(names, pipe.execute(), strict=True):
            if not members:
                self.redis.srem(WORKERS, name)
            tags |= members
        tags.discard("")
        return tags
