"""Failpoints for the fault tests: a worker process that reaches a named point kills itself
with SIGKILL, as a crash would, so a test can stop a worker at one exact place
(`CUTOUT_FAILPOINT=POINT[:TIMES]`). Off (and one string comparison) when the setting is empty.
"""

from __future__ import annotations

import os
import signal

import redis

from config import Settings

__all__ = ["failpoint"]


def failpoint(settings: Settings, client: redis.Redis, point: str) -> None:
    """SIGKILL this process if the settings name this point and it has fired fewer times than
    asked (counted in Redis, across every process)."""
    if not settings.failpoint:
        return
    name, _, times = settings.failpoint.partition(":")
    if name != point:
        return
    if client.incr(f"cutout:failpoint:{point}") <= int(times or 1):
        os.kill(os.getpid(), signal.SIGKILL)
