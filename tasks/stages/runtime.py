"""The per-process parts every stage uses: settings, Redis, ledger, limiter, schedules,
leases, API client.

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
from tasks.store.budgets import Budgets
from tasks.store.dedupe import DedupeIndex
from tasks.store.durability import Durability, durability_of
from tasks.store.leases import LeaseKeeper
from tasks.store.ledger import COLLECT_SCHEDULE, POLL_SCHEDULE, Ledger
from tasks.store.metrics import ApiCallCounter
from tasks.store.schedule import DueSchedule, TickMarker

__all__ = ["Runtime", "runtime"]


@dataclass(frozen=True)
class Runtime:
    settings: Settings
    redis: redis.Redis
    ledger: Ledger
    limiter: Limiter
    schedule: DueSchedule  # SUBMITTED jobs by when to poll them
    collect_schedule: DueSchedule  # finished jobs by when to collect them
    ticks: TickMarker
    leases: LeaseKeeper
    durability: Durability
    store: OutputStore
    client: PicpikClient
    dedupe: DedupeIndex  # the same-cutout index
    budgets: Budgets  # the credit budgets of this PublicKey

    @classmethod
    def build(cls, settings: Settings) -> Runtime:
        client = redis.Redis.from_url(settings.redis_url, decode_responses=True)
        calls = ApiCallCounter(client)
        return cls(
            settings=settings,
            redis=client,
            ledger=Ledger(client),
            limiter=Limiter(client, settings, calls),
            schedule=DueSchedule(client, POLL_SCHEDULE),
            collect_schedule=DueSchedule(client, COLLECT_SCHEDULE),
            ticks=TickMarker(client),
            leases=LeaseKeeper(client, settings.lease_s),
            durability=durability_of(client),
            store=OutputStore(client),
            client=PicpikClient(settings, on_call=calls.record),
            dedupe=DedupeIndex(client, settings.dedupe_ttl_s),
            budgets=Budgets(client, settings.public_key, settings.daily_credit_budget),
        )


@lru_cache(maxsize=1)
def runtime() -> Runtime:
    """This process's parts, from the environment's settings."""
    return Runtime.build(get_settings())
