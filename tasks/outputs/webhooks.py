"""Webhooks in the Standard Webhooks scheme (https://www.standardwebhooks.com): the event body,
its signature, and the deliveries kept in Redis (what to send, when to try again, each attempt
logged on the job). Sending itself is tasks/stages/deliver.py, through the address guard.

A delivery is created once per event (the consumer group's XACK and the creation are one
script) and keeps its `webhook-id` across retries, so a receiver can drop a repeat.
"""

from __future__ import annotations

import binascii
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlsplit

import redis
from standardwebhooks import Webhook
from standardwebhooks.webhooks import EmptyWebhookSecretError, WebhookVerificationError

from picpik.errors import InvalidInput, PermanentError
from tasks.store.ledger import EVENTS_STREAM, job_key
from tasks.store.records import JobRecord
from tasks.store.stream import Entry

__all__ = [
    "DUE",
    "WEBHOOKS_GROUP",
    "WEBHOOK_EVENTS",
    "Deliveries",
    "Delivery",
    "Signer",
    "check_webhook_url",
    "event_body",
    "verify",
]

WEBHOOKS_GROUP = "cutout-webhooks"
WEBHOOK_EVENTS = ("job.succeeded", "job.failed", "job.needs_reconciliation")
DUE = "cutout:webhooks:due"  # zset: webhook id -> when to try (Redis clock); claimed ahead
MAX_URL_CHARS = 2048
KEEP_FINISHED_S = 7 * 24 * 3600  # a delivered (or given up) delivery's own record lasts this
STATES = {"job.succeeded": "SUCCEEDED", "job.failed": "FAILED",
          "job.needs_reconciliation": "NEEDS_RECONCILIATION"}


def delivery_key(webhook_id: str) -> str:
    return f"cutout:webhook:{webhook_id}"


def check_webhook_url(url: str) -> str:
    """An http(s) URL with a host, as given; raises InvalidInput naming `webhook_url`. (Its
    addresses are checked by the guard when it is called, as image URLs are.)"""
    split = urlsplit(url) if isinstance(url, str) else None
    if split is None or split.scheme.lower() not in ("http", "https") or not split.hostname:
        raise InvalidInput(f"must be an http or https URL, got {url!r}", field="webhook_url")
    if len(url) > MAX_URL_CHARS:
        raise InvalidInput(f"is longer than {MAX_URL_CHARS} characters", field="webhook_url")
    return url


class Signer:
    """Signs bodies with the `whsec_...` secret (CUTOUT_WEBHOOK_SECRET)."""

    def __init__(self, secret: str) -> None:
        try:
            self._webhook = Webhook(secret)
        except (binascii.Error, ValueError, RuntimeError, EmptyWebhookSecretError) as exc:
            raise PermanentError("CUTOUT_WEBHOOK_SECRET must be whsec_ followed by base64",
                                 field="webhook_secret") from exc

    def headers(self, webhook_id: str, body: str, now: datetime) -> dict[str, str]:
        """The three Standard Webhooks headers for one attempt (timestamp: this attempt's)."""
        return {"webhook-id": webhook_id,
                "webhook-timestamp": str(int(now.timestamp())),
                "webhook-signature": self._webhook.sign(webhook_id, now, body),
                "Content-Type": "application/json", "User-Agent": "cutout-webhooks/0.1"}


def verify(secret: str, body: bytes | str, headers: Mapping[str, str]) -> Any:
    """For a receiver written in Python: the event if the signature and timestamp (within
    five minutes) hold, else InvalidInput naming the header. Malformed headers, which the
    library reports as raw binascii/ValueError, come out the same way."""
    try:
        return Webhook(secret).verify(body, dict(headers))
    except WebhookVerificationError as exc:
        raise InvalidInput(str(exc), field="webhook-signature") from exc
    except (binascii.Error, ValueError, TypeError) as exc:
        raise InvalidInput(f"malformed webhook headers: {exc}",
                           field="webhook-signature") from exc


def event_body(fields: Mapping[str, str], record: JobRecord) -> str:
    """The JSON an event is delivered as: {"type", "timestamp", "data": {the job}}."""
    kind = fields["type"]
    data: dict[str, Any] = {
        "job_id": record.job_id, "batch": record.batch, "reference": record.reference,
        "state": STATES.get(kind), "task_uid": fields.get("task_uid") or record.task_uid,
    }
    if kind == "job.succeeded":
        data["result_paths"] = json.loads(fields.get("result_paths") or "[]")
        data["credits"] = float(fields.get("credits") or 0)
        if fields.get("reused_from"):  # the same cutout made before: copied, no call
            data["reused_from"] = fields["reused_from"]
    else:
        data["error"] = {name: fields.get(f"error_{name}") or None
                         for name in ("stage", "code", "field", "message")}
    at = datetime.fromtimestamp(float(fields.get("at") or 0), UTC)
    payload = {"type": kind, "timestamp": at.isoformat(timespec="milliseconds"), "data": data}
    return json.dumps(payload, separators=(",", ":"))


@dataclass(frozen=True)
class Delivery:
    webhook_id: str
    job_id: str
    batch: str
    url: str
    event: str
    body: str
    attempts: int  # made so far
    created_at: float  # Redis clock


# KEYS: stream, due. ARGV: group, JSON [[entry id, webhook id ('' = none), job, url, event,
# body, batch]]. Acknowledges each entry; creates its delivery only if this call acked it.
_SCHEDULE = """
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1000000
local created = 0
for _, d in ipairs(cjson.decode(ARGV[2])) do
  if redis.call('XACK', KEYS[1], ARGV[1], d[1]) == 1 and d[2] ~= '' then
    local key = 'cutout:webhook:' .. d[2]
    if redis.call('EXISTS', key) == 0 then
      redis.call('HSET', key, 'webhook_id', d[2], 'job_id', d[3], 'url', d[4], 'event', d[5],
                 'body', d[6], 'batch', d[7], 'attempts', 0, 'state', 'pending',
                 'created_at', string.format('%.6f', now))
      redis.call('ZADD', KEYS[2], now, d[2])
      created = created + 1
    end
  end
end
return created
"""

# KEYS: due. ARGV: limit, lease seconds. The due ids, each pushed lease seconds ahead.
_CLAIM = """
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1000000
local ids = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', now, 'LIMIT', 0, tonumber(ARGV[1]))
for _, id in ipairs(ids) do redis.call('ZADD', KEYS[1], now + tonumber(ARGV[2]), id) end
return ids
"""

# KEYS: delivery, due, job. ARGV: webhook id, attempt JSON, outcome, retry in s, keep s.
_RECORD = """
if redis.call('EXISTS', KEYS[3]) == 1 then
  local old = redis.call('HGET', KEYS[3], 'webhook_attempts')
  if not old or old == '' or old == '[]' then
    old = '[' .. ARGV[2] .. ']'
  else
    old = string.sub(old, 1, -2) .. ',' .. ARGV[2] .. ']'
  end
  redis.call('HSET', KEYS[3], 'webhook_attempts', old)
end
redis.call('HINCRBY', KEYS[1], 'attempts', 1)
redis.call('HSET', KEYS[1], 'state', ARGV[3])
if ARGV[3] == 'retrying' then
  local t = redis.call('TIME')
  redis.call('ZADD', KEYS[2], tonumber(t[1]) + tonumber(t[2]) / 1000000 + tonumber(ARGV[4]),
             ARGV[1])
else
  redis.call('ZREM', KEYS[2], ARGV[1])
  redis.call('EXPIRE', KEYS[1], tonumber(ARGV[5]))
end
return 1
"""


class Deliveries:
    """Webhook deliveries in Redis: created from events, claimed when due, then recorded."""

    def __init__(self, client: redis.Redis) -> None:
        self.redis = client
        self._schedule = client.register_script(_SCHEDULE)
        self._claim = client.register_script(_CLAIM)
        self._record = client.register_script(_RECORD)

    def schedule(self, group: str, entries: Sequence[Entry],
                 bodies: Mapping[str, tuple[str, str]]) -> int:
        """Acknowledge `entries` for `group`; for each entry id in `bodies` ((url, body)),
        create its delivery, due now. Returns how many were created."""
        rows = []
        for entry_id, fields in entries:
            url, body = bodies.get(entry_id, ("", ""))
            webhook_id = f"msg_{entry_id}" if url else ""
            rows.append([entry_id, webhook_id, fields.get("job_id", ""), url,
                         fields.get("type", ""), body, fields.get("batch", "")])
        if not rows:
            return 0
        return int(self._schedule(keys=[EVENTS_STREAM, DUE],
                                  args=[group, json.dumps(rows)]))

    def claim_due(self, limit: int, lease_s: float) -> list[Delivery]:
        ids: list[str] = self._claim(keys=[DUE], args=[limit, lease_s])
        found = [self.get(webhook_id) for webhook_id in ids]
        missing = [i for i, d in zip(ids, found, strict=True) if d is None]
        if missing:
            self.redis.zrem(DUE, *missing)
        return [d for d in found if d is not None]

    def get(self, webhook_id: str) -> Delivery | None:
        raw: dict[str, str] = self.redis.hgetall(delivery_key(webhook_id))  # type: ignore[assignment]
        if not raw:
            return None
        return Delivery(webhook_id=webhook_id, job_id=raw["job_id"],
                        batch=raw.get("batch", ""), url=raw["url"],
                        event=raw["event"], body=raw["body"], attempts=int(raw["attempts"]),
                        created_at=float(raw["created_at"]))

    def record(self, delivery: Delivery, attempt: Mapping[str, Any], outcome: str,
               retry_in_s: float = 0.0) -> None:
        """Log one attempt on the job, then: `retrying` (due again in retry_in_s), or
        `delivered` / `undelivered` (done)."""
        self._record(keys=[delivery_key(delivery.webhook_id), DUE, job_key(delivery.job_id)],
                     args=[delivery.webhook_id, json.dumps(attempt, separators=(",", ":")),
                           outcome, f"{retry_in_s:.3f}", KEEP_FINISHED_S])

    def pending(self) -> int:
        return int(self.redis.zcard(DUE))
