"""Reading the events stream `cutout:events` through a consumer group: each event is handed to
one consumer of the group, and one that was read but never acknowledged (its reader died) is
taken over by another after a while. The handler acknowledges (XACK) in the same Lua script
that applies the event, so an event is applied once even when it is read twice.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, cast

import redis

from tasks.store.ledger import EVENTS_STREAM

__all__ = ["Entry", "EventGroup"]

Entry = tuple[str, dict[str, str]]  # (stream id, fields)


@dataclass
class EventGroup:
    """One consumer group on the events stream, read as one named consumer."""

    redis: redis.Redis
    group: str
    consumer: str
    _next_reclaim: str = "0-0"

    def ensure(self) -> None:
        """Create the group (and the stream) unless it exists. It starts at the stream's
        beginning, so the events written before the first worker started are not skipped."""
        try:
            self.redis.xgroup_create(EVENTS_STREAM, self.group, id="0", mkstream=True)
        except redis.ResponseError as exc:
            if "BUSYGROUP" not in str(exc):
                raise

    def read(self, count: int, block_ms: int | None) -> list[Entry]:
        """Events no consumer of the group has read yet (waiting up to block_ms for one)."""
        return _entries(self.redis.xreadgroup(
            self.group, self.consumer, {EVENTS_STREAM: ">"}, count=count, block=block_ms))

    def reclaim(self, min_idle_ms: int, count: int) -> list[Entry]:
        """Events another consumer read and did not acknowledge for min_idle_ms (it died):
        taken over by this one. Entries trimmed from the stream meanwhile are acknowledged."""
        answer = cast(list[Any], self.redis.xautoclaim(
            EVENTS_STREAM, self.group, self.consumer, min_idle_ms, start_id=self._next_reclaim,
            count=count))
        self._next_reclaim = answer[0]
        entries = answer[1]
        gone = answer[2] if len(answer) > 2 else []
        if gone:
            self.redis.xack(EVENTS_STREAM, self.group, *gone)
        return [(entry_id, fields) for entry_id, fields in entries if fields]

    def ack(self, entry_ids: list[str]) -> None:
        if entry_ids:
            self.redis.xack(EVENTS_STREAM, self.group, *entry_ids)


def _entries(answer: Any) -> list[Entry]:
    """The entries of an XREADGROUP answer on the one stream (deleted ones left out)."""
    if not answer:
        return []
    _, entries = cast(list[Any], answer)[0]
    return [(entry_id, fields) for entry_id, fields in entries if fields is not None]
