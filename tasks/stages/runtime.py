"""The per-process parts every task uses: settings, Redis, ledger, limiter, API client.

Built lazily in the process that runs tasks (after the prefork fork), once per process.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import redis

from config import Settings, get_settings
from picpik.client import PicpikClient
from tasks.limits.limiter import Limiter
from tasks.outputs.storage import OutputStore
from tasks.store.ledger import Ledger
from tasks.store.metrics import ApiCallCounter
from tasks.store.schedule import PollSchedule, TickMarker

__all__ = ["Runtime", "runtime"]


@dataclass(frozen=True)
class Runtime:
    settings: Settings
    redis: redis.Redis
    ledger: Ledger
    limiter: Limiter
    schedule: PollSchedule
    ticks: TickMarker
    store: OutputStore
    client: PicpikClient

    @classmethod
    def build(cls, settings: Settings) -> Runtime:
        client = redis.Redis.from_url(settings.redis_url, decode_responses=True)
        return cls(
            settings=settings,
            redis=client,
            ledger=Ledger(client),
            limiter=Limiter(client, settings),
            schedule=PollSchedule(client),
            ticks=TickMarker(client),
            store=OutputStore(client),
            client=PicpikClient(settings, on_call=ApiCallCounter(client).record),
        )


@lru_cache(maxsize=1)
def runtime() -> Runtime:
    """This process's parts, from the environment's settings."""
    return Runtime.build(get_settings())
