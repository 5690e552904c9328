"""What each worker does with the events stream besides the stages: fold every event into the
metrics' totals (consumer group `cutout-metrics`), turn each finished job's event into a webhook
delivery when the job names a URL (group `cutout-webhooks`), and send the deliveries that are
due. One `step()` is one round (its Redis side: tasks/store/event_rounds.py); tasks/webhooks.py
runs rounds in a thread of the main process.
"""

from __future__ import annotations

import logging
import os
import socket
import time
from collections.abc import Sequence
from dataclasses import dataclass, field

import redis

from config import Settings
from tasks.outputs.webhooks import DUE, WEBHOOK_EVENTS, WEBHOOKS_GROUP, event_body
from tasks.stages.deliver import Courier
from tasks.store.event_rounds import EventRounds
from tasks.store.ledger import Ledger
from tasks.store.metrics import METRICS_GROUP, apply_events_call
from tasks.store.scripts import run_scripts
from tasks.store.stream import Entry, EventGroup

__all__ = ["Outbox", "consumer_name"]

log = logging.getLogger(__name__)

READ_COUNT = 200  # events per read
# How long a round waits for a new event when nothing was sent; never past the time the first
# webhook delivery is due (the round tells). A new event ends the wait at once.
IDLE_BLOCK_MS = 2000
# After a round that read only a few events, the next waits this long, so that it reads many at
# once: a blocking wait returns with the first event, and a round costs a round trip and a
# script however few it reads. Metrics and webhooks come this much later at most; the jobs
# themselves do not wait.
GATHER_S = 0.2
RECLAIM_EVERY_S = 30.0
RECLAIM_IDLE_MS = 60_000  # an event read this long ago and not acknowledged: its reader died
NO_SECRET_WARN_EVERY_S = 300.0


def consumer_name() -> str:
    return f"{socket.gethostname()}-{os.getpid()}"


@dataclass
class Outbox:
    settings: Settings
    redis: redis.Redis
    ledger: Ledger
    courier: Courier
    metrics: EventGroup
    webhooks: EventGroup
    _next_reclaim: float = 0.0
    _next_warning: float = 0.0
    _rounds: EventRounds = field(init=False)
    _last_id: str | None = None  # the stream's last entry when the previous round ran
    _read: int = 0  # events the previous round read
    _next_due_s: float | None = None  # when the previous round ran, until a delivery was due

    def __post_init__(self) -> None:
        self._rounds = EventRounds(self.redis, WEBHOOK_EVENTS)

    @classmethod
    def build(cls, settings: Settings, consumer: str | None = None) -> Outbox:
        client = redis.Redis.from_url(settings.redis_url, decode_responses=True)
        name = consumer or consumer_name()
        return cls(settings, client, Ledger(client), Courier.build(settings, client),
                   EventGroup(client, METRICS_GROUP, name),
                   EventGroup(client, WEBHOOKS_GROUP, name))

    def start(self) -> None:
        self.metrics.ensure()
        self.webhooks.ensure()

    def step(self) -> int:
        """Reclaim events of dead readers now and then, send what is due, read new events
        (waiting a little for them when nothing was sent). Returns the events read."""
        if time.monotonic() >= self._next_reclaim:
            self._next_reclaim = time.monotonic() + RECLAIM_EVERY_S
            self._handle(self.metrics.reclaim(RECLAIM_IDLE_MS, READ_COUNT),
                         self.webhooks.reclaim(RECLAIM_IDLE_MS, READ_COUNT))
        sent = self.courier.deliver_due()
        self._warn_without_secret()
        wait_ms = self._wait_ms(sent)
        done = self._rounds.run(
            (self.metrics.group, self.webhooks.group), self.metrics.consumer, READ_COUNT,
            (self._last_id, wait_ms) if self._last_id is not None and wait_ms > 0 else None,
            due_key=DUE if self.courier.signer is not None else None)  # unsigned: never sent
        self._last_id, self._read, self._next_due_s = done.last_id, done.read, done.next_due_s
        self._schedule_webhooks(done.named)
        return done.read

    def _wait_ms(self, sent: int) -> int:
        """How long this round first waits for a new event (the wait and the round are one
        round trip): not at all after a full batch or when deliveries were sent (more may be
        due), else up to IDLE_BLOCK_MS but never past the first delivery's due time."""
        if sent or self._last_id is None or self._read >= READ_COUNT:
            return 0
        if self._next_due_s is None:
            return IDLE_BLOCK_MS
        return min(IDLE_BLOCK_MS, int(self._next_due_s * 1000))

    def pause_s(self, read: int) -> float:
        """How long to wait before the next round, after one that read `read` events."""
        return GATHER_S if 0 < read < READ_COUNT else 0.0

    def _handle(self, metrics: Sequence[Entry], webhooks: Sequence[Entry]) -> None:
        """As a round does, for events read some other way (reclaimed): fold `metrics` into
        the totals; acknowledge the `webhooks` entries of jobs without a webhook URL, and turn
        the others into deliveries."""
        ack = self._rounds.ack_plain_call(self.webhooks.group, webhooks)
        calls = [c for c in (apply_events_call(self.redis, METRICS_GROUP, metrics), ack) if c]
        answers = run_scripts(self.redis, calls) if calls else []
        named = [webhooks[int(i) - 1] for i in answers[-1]] if ack else []
        self._schedule_webhooks(named)

    def _schedule_webhooks(self, entries: Sequence[Entry]) -> None:
        """A delivery for each of these entries (finished jobs naming a webhook URL), read from
        the whole record; every entry acked."""
        if not entries:
            return
        records = self.ledger.get_many([f.get("job_id", "") for _, f in entries])
        bodies = {}
        for (entry_id, fields), record in zip(entries, records, strict=True):
            if record is not None and record.webhook_url:
                bodies[entry_id] = (record.webhook_url, event_body(fields, record))
        created = self.courier.deliveries.schedule(self.webhooks.group, entries, bodies)
        if created:
            log.debug("%d webhook deliveries scheduled", created)

    def _warn_without_secret(self) -> None:
        if self.courier.signer is not None or time.monotonic() < self._next_warning:
            return
        self._next_warning = time.monotonic() + NO_SECRET_WARN_EVERY_S
        waiting = self.courier.deliveries.pending()
        if waiting:
            log.warning("%d webhook deliveries wait: CUTOUT_WEBHOOK_SECRET is not set, and "
                        "nothing is sent unsigned", waiting)
