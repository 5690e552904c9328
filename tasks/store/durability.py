"""Durable before acting: the write that proves a call was made must survive a Redis crash.

With AOF on and `appendfsync everysec`, Redis acknowledges a write up to a second before it is
on disk: a crash in that second forgets that a call started, and the job would be claimed and
paid again. Redis 7.2+ offers WAITAOF (wait until the local AOF has the write); on older Redis
the only guarantee is `appendfsync always`. Checked once per process; without either, a worker
says so at start-up, once.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import redis

__all__ = ["Durability", "durability_of"]

log = logging.getLogger(__name__)

WAITAOF_TIMEOUT_MS = 1000
_WAITAOF_SINCE = (7, 2)


@dataclass(frozen=True)
class Durability:
    """How this Redis makes a write durable before the caller acts on it."""

    waitaof: bool  # the server has WAITAOF
    fsync_always: bool  # every acknowledged write is already on disk

    @property
    def guaranteed(self) -> bool:
        return self.waitaof or self.fsync_always

    def warning(self) -> str | None:
        if self.guaranteed:
            return None
        return ("the ledger's Redis acknowledges writes before they reach the disk (AOF off, "
                "or appendfsync everysec on a Redis older than 7.2): a Redis crash right after "
                "a call starts can forget it, and that job would be paid twice. Use "
                "'appendonly yes' with 'appendfsync always', or Redis 7.2 or newer")

    def wait_on(self, pipe: redis.client.Pipeline) -> None:
        """Queue, after the writes already in this pipeline (one connection), the wait until
        they are on the local disk: nothing when every write already is, or when nothing can
        make it so."""
        if self.waitaof and not self.fsync_always:
            pipe.execute_command("WAITAOF", 1, 0, WAITAOF_TIMEOUT_MS)


def durability_of(client: redis.Redis) -> Durability:
    """Ask the server once: its version, whether AOF is on, and its fsync policy (a Redis
    that hides CONFIG, as some managed ones do, counts as giving no guarantee)."""
    info = client.info("server")
    version = tuple(int(p) for p in str(info.get("redis_version", "0.0")).split(".")[:2])
    try:
        config = client.config_get("appendonly")
        config.update(client.config_get("appendfsync"))
    except redis.ResponseError:
        return Durability(waitaof=version >= _WAITAOF_SINCE, fsync_always=False)
    aof = config.get("appendonly") == "yes"
    return Durability(waitaof=aof and version >= _WAITAOF_SINCE,
                      fsync_always=aof and config.get("appendfsync") == "always")
