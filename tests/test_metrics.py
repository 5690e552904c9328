"""The figures behind /metrics, without a worker: state counts kept by the ledger's scripts,
totals folded from the events stream exactly once, API calls counted by the client's hook
(against the real local API server), and the collector's Prometheus text."""

from __future__ import annotations

from typing import Any

import pytest
import redis
from prometheus_client import generate_latest
from prometheus_client.parser import text_string_to_metric_families

from config import Settings
from picpik.client import PicpikClient
from picpik.errors import RejectedKey
from producers.serve.metrics import registry_for
from tasks.limits.limiter import Limiter
from tasks.store.claims import claim
from tasks.store.ledger import EVENTS_STREAM, Ledger, redis_now
from tasks.store.metrics import (
    API_RESULT_TTL_S,
    METRICS_GROUP,
    ApiCallCounter,
    apply_events,
    read_event_totals,
)
from tasks.store.records import JobState
from tasks.store.stream import EventGroup
from tests.support.emulator_server import EmulatorProcess


def test_state_counts_follow_every_job_through_claim_and_transitions(redis_url: str) -> None:
    ledger = Ledger.from_url(redis_url)
    ledger.create_many([(f"j{i}", f"/in/{i}.png") for i in range(5)], {}, batch="b")
    ledger.create("loose", "/in/loose.png", {})  # no batch: counted all the same
    claim(ledger, "j0", lease_s=30, owner="test")
    claim(ledger, "j1", lease_s=30, owner="test")
    ledger.transition("j1", [JobState.SUBMITTING], JobState.SUBMITTED, event="job.submitted")
    ledger.fail("j2", [JobState.ACCEPTED], "fetch", "invalid_input", "no such file")
    assert ledger.state_counts() == {"ACCEPTED": 3, "SUBMITTING": 1, "SUBMITTED": 1,
                                     "FAILED": 1}
    assert not ledger.create("j3", "/in/again.png", {})  # an id recorded twice counts once
    assert sum(ledger.state_counts().values()) == 6


def event(ledger: Ledger, job_id: str, kind: str, **fields: Any) -> None:
    ledger.redis.xadd(EVENTS_STREAM, {"type": kind, "job_id": job_id, "batch": "",
                                      "at": f"{fields.pop('at'):.6f}", **fields})


def test_events_are_folded_into_the_totals_once_even_when_read_twice(redis_url: str) -> None:
    ledger = Ledger.from_url(redis_url)
    client = ledger.redis
    group = EventGroup(client, METRICS_GROUP, "test")
    group.ensure()
    now = redis_now(client)
    event(ledger, "fast", "job.submitted", at=now - 10, task_uid="u1")
    event(ledger, "fast", "job.succeeded", at=now - 7, credits="2.5")
    event(ledger, "slow", "job.submitted", at=now - 100, task_uid="u2")
    event(ledger, "slow", "job.failed", at=now, error_code="task_error:1001")
    event(ledger, "old", "job.submitted", at=now - API_RESULT_TTL_S + 600, task_uid="u3")
    event(ledger, "x", "job.reused", at=now)  # a type these totals do not know: acked only
    entries = group.read(100, None)
    assert apply_events(client, METRICS_GROUP, entries) == 5
    assert apply_events(client, METRICS_GROUP, entries) == 0  # read again: nothing twice
    totals = read_event_totals(client, redis_now(client))
    assert totals.finished == {"job.succeeded": 1, "job.failed": 1,
                               "job.needs_reconciliation": 0}
    assert totals.credits == 2.5
    assert totals.latency_count == 2 and abs(totals.latency_sum_s - 103) < 0.01
    assert totals.latency_buckets[2] == 1  # 3 s: in the bucket up to 5 s
    assert totals.expiring_soon == 1  # "old": submitted 23 h 50 min ago, not collected
    assert client.xpending(EVENTS_STREAM, METRICS_GROUP)["pending"] == 0


def test_every_api_call_is_counted_by_action_and_outcome(
        redis_url: str, emulator: EmulatorProcess) -> None:
    counter = ApiCallCounter(redis.Redis.from_url(redis_url, decode_responses=True))
    good = Settings(api_base_url=emulator.base_url, public_key=emulator.public_key,
                    private_key=emulator.private_key)
    with PicpikClient(good, on_call=counter.record) as client:
        client.list_running_tasks()
        client.list_running_tasks()
    bad = Settings(api_base_url=emulator.base_url, public_key=emulator.public_key,
                   private_key="wrong")
    with PicpikClient(bad, on_call=counter.record) as client, pytest.raises(RejectedKey):
        client.list_running_tasks()
    assert counter.read() == {("ListRunningTasks", "ok"): 2,
                              ("ListRunningTasks", "rejected_key"): 1}


def test_calls_inside_a_limiter_slot_are_counted_when_the_slot_is_freed(
        redis_url: str, emulator: EmulatorProcess) -> None:
    client = redis.Redis.from_url(redis_url, decode_responses=True)
    counter = ApiCallCounter(client)
    settings = Settings(api_base_url=emulator.base_url, public_key=emulator.public_key,
                        private_key=emulator.private_key)
    limiter = Limiter(client, settings, counter)
    with PicpikClient(settings, on_call=counter.record) as api:
        with limiter.call(1.0) as grant:
            api.list_running_tasks()
            assert counter.read() == {}  # kept for the slot's release
            pipe = client.pipeline(transaction=False)
            limiter.release_into(grant, pipe)  # a caller's own write takes them along
            pipe.execute()
            assert counter.read() == {("ListRunningTasks", "ok"): 1}
            api.list_running_tasks()
        api.list_running_tasks()  # outside any slot: counted at once
    assert counter.read() == {("ListRunningTasks", "ok"): 3}  # the slot's end sent the rest


def test_a_hook_that_fails_does_not_change_the_call(emulator: EmulatorProcess) -> None:
    def broken(action: str, outcome: str) -> None:
        raise redis.ConnectionError("Redis is away")

    settings = Settings(api_base_url=emulator.base_url, public_key=emulator.public_key,
                        private_key=emulator.private_key)
    with PicpikClient(settings, on_call=broken) as client:
        assert client.list_running_tasks() == []


def test_the_collector_writes_every_figure_in_prometheus_text(redis_url: str) -> None:
    settings = Settings(redis_url=redis_url)
    client = redis.Redis.from_url(redis_url, decode_responses=True)
    Ledger(client).create("m1", "/in/m1.png", {}, batch="m")
    ApiCallCounter(client).record("RemoveBackground", "throttled")
    ApiCallCounter(client).record("RemoveBackground", "ok")
    text = generate_latest(registry_for(settings, client)).decode()
    samples = {(s.name, tuple(sorted(s.labels.items()))): s.value
               for family in text_string_to_metric_families(text) for s in family.samples}
    assert samples[("cutout_jobs", (("state", "ACCEPTED"),))] == 1
    assert samples[("cutout_jobs", (("state", "SUCCEEDED"),))] == 0
    assert samples[("cutout_queue_messages", (("queue", "submit"),))] == 0
    assert samples[("cutout_api_calls_total", (("action", "RemoveBackground"),
                                               ("outcome", "throttled")))] == 1
    assert samples[("cutout_throttled_total", ())] == 1
    assert samples[("cutout_limiter_rate_factor", ())] == 1.0
    assert samples[("cutout_credits_spent_total", ())] == 0
    assert samples[("cutout_oldest_open_job_age_seconds", ())] >= 0
    assert samples[("cutout_results_expiring_within_seconds", ())] == 0
    assert samples[("cutout_job_latency_seconds_count", ())] == 0
    assert ("cutout_job_latency_seconds_bucket", (("le", "+Inf"),)) in samples
