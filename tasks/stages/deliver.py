"""Sending due webhook deliveries: each one a signed POST through the address guard that image
URLs pass (tasks/inputs: why this stage lives here, not in tasks/outputs), with a timeout. A 2xx
answer delivers it; anything else is retried with exponential backoff and jitter until
CUTOUT_WEBHOOK_GIVE_UP_AFTER_S, then recorded undelivered. Every attempt is logged on the job.

Runs in a thread of each worker's main process (tasks/webhooks.py), never in the pool that
runs the stages, so a slow receiver holds up nothing but other deliveries.
"""

from __future__ import annotations

import http.client
import logging
import random
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from redis import Redis

from config import Settings
from config.logs import job_context
from picpik.errors import CutoutError
from tasks.inputs.fetch import open_guarded
from tasks.inputs.netguard import Allowance
from tasks.outputs.webhooks import Deliveries, Delivery, Signer
from tasks.stages.backoff import retry_delay
from tasks.store.ledger import redis_now

__all__ = ["Courier", "lease_s", "next_step"]

log = logging.getLogger(__name__)

ANSWER_BYTES = 4096  # read of a receiver's answer (its body is not used)


def next_step(settings: Settings, attempts_before: int, age_s: float, status: int | None,
              rng: random.Random | None = None) -> tuple[str, float]:
    """After an attempt answered `status` (None: no answer), for a delivery `age_s` old that
    had `attempts_before` attempts before this one: ("delivered" | "undelivered", 0) or
    ("retrying", seconds until the next attempt)."""
    if status is not None and 200 <= status < 300:
        return "delivered", 0.0
    if age_s >= settings.webhook_give_up_after_s:
        return "undelivered", 0.0
    return "retrying", retry_delay(attempts_before, settings.webhook_retry_base_s,
                                   settings.webhook_retry_max_delay_s, rng)


def lease_s(settings: Settings) -> float:
    """How long a claimed delivery is held: past its POST's timeout, with room to record it."""
    return 2 * settings.webhook_timeout_s + 10


@dataclass
class Courier:
    """Sends due deliveries, up to CUTOUT_WEBHOOK_CONCURRENCY at a time."""

    settings: Settings
    redis: Redis
    deliveries: Deliveries
    signer: Signer | None
    allowance: Allowance
    pool: ThreadPoolExecutor

    @classmethod
    def build(cls, settings: Settings, client: Redis) -> Courier:
        secret = settings.webhook_secret
        return cls(settings, client, Deliveries(client),
                   Signer(secret.get_secret_value()) if secret else None,
                   Allowance(settings.fetch_allow),
                   ThreadPoolExecutor(settings.webhook_concurrency,
                                      thread_name_prefix="cutout-webhook"))

    def deliver_due(self) -> int:
        """Send the deliveries due now (one round); how many were attempted."""
        if self.signer is None:
            return 0  # nothing is sent unsigned; they wait until a secret is configured
        due = self.deliveries.claim_due(self.settings.webhook_concurrency, lease_s(self.settings))
        for _ in self.pool.map(self.deliver, due):
            pass
        return len(due)

    def deliver(self, delivery: Delivery) -> str:
        """One attempt: POST, then log it on the job and decide what comes next."""
        with job_context(job_id=delivery.job_id, batch=delivery.batch, stage="webhook"):
            at = time.time()
            status, error = self._post(delivery)
            age = redis_now(self.redis) - delivery.created_at
            outcome, retry_in = next_step(self.settings, delivery.attempts, age, status)
            attempt: dict[str, Any] = {
                "webhook_id": delivery.webhook_id, "event": delivery.event,
                "attempt": delivery.attempts + 1, "at": round(at, 3), "status": status,
                "error": error, "outcome": outcome,
                "next_at": round(time.time() + retry_in, 3) if outcome == "retrying" else None,
            }
            self.deliveries.record(delivery, attempt, outcome, retry_in)
            level = logging.INFO if outcome == "delivered" else logging.WARNING
            log.log(level, "webhook %s (%s) attempt %d: %s%s", delivery.webhook_id,
                    delivery.event, attempt["attempt"], error or f"HTTP {status}",
                    f"; again in {retry_in:.1f} s" if outcome == "retrying" else f"; {outcome}")
            return outcome

    def _post(self, delivery: Delivery) -> tuple[int | None, str | None]:
        """(HTTP status, None) when the receiver answered, else (None, why not)."""
        assert self.signer is not None
        headers = self.signer.headers(delivery.webhook_id, delivery.body, datetime.now(UTC))
        deadline = time.monotonic() + self.settings.webhook_timeout_s
        try:
            response, conn = open_guarded("POST", delivery.url, self.allowance, deadline,
                                          body=delivery.body.encode(), headers=headers,
                                          field="webhook_url")
        except CutoutError as exc:
            return None, exc.message
        try:
            response.read(ANSWER_BYTES)
        except (OSError, http.client.HTTPException):
            pass  # the status is what counts
        finally:
            conn.close()
        return response.status, None if 200 <= response.status < 300 else \
            f"HTTP {response.status}"
