"""A producer that retries `enqueue_many` after an error does not pay again: callers pass their
own job ids or an idempotency key, and a repeat records nothing new, returns the same ids,
re-publishes no job already past ACCEPTED and loses none whose message was never published.

Real Redis as the ledger, Redis or RabbitMQ as the broker, no worker: the submit queue's length
shows what was published (tests/test_pipeline.py runs repeats through real workers and counts
the API calls)."""

from __future__ import annotations

import uuid

import pytest
from kombu import Connection

from config import Settings
from picpik.errors import InvalidInput
from producers import api
from tasks.store.ledger import Ledger
from tasks.store.records import JobState

REFS = ["/data/a.png", "/data/b.png", "/data/c.png"]


@pytest.fixture
def settings(redis_url: str, broker_url: str) -> Settings:
    """The suite's Redis as the ledger; the broker is Redis, then RabbitMQ (two runs)."""
    return Settings(_env_file=None, redis_url=redis_url,  # type: ignore[call-arg]
                    broker_url=broker_url)


def queued(settings: Settings) -> int:
    """Messages waiting on the `submit` queue, asked of the broker whichever it is."""
    with Connection(settings.broker, connect_timeout=10) as conn:
        try:
            return int(conn.default_channel.queue_declare("submit", passive=True).message_count)
        except conn.channel_errors:  # RabbitMQ: no such queue yet, so nothing published
            return 0


def test_the_same_idempotency_key_gives_the_same_ids_and_records_nothing_new(
        settings: Settings) -> None:
    first = api.enqueue_many(REFS, batch="k", idempotency_key="order-77", settings=settings)
    again = api.enqueue_many(REFS, batch="k", idempotency_key="order-77", settings=settings)
    assert again == first and len(set(first)) == 3
    assert all(uuid.UUID(job_id) for job_id in first)  # derived ids are UUIDs
    assert api.batch_counts("k", settings=settings) == {"ACCEPTED": 3}
    other = api.enqueue_many(REFS, batch="k2", idempotency_key="order-78", settings=settings)
    assert not set(other) & set(first)


def test_callers_may_pass_their_own_job_ids(settings: Settings) -> None:
    ids = ["shop-1", "shop-2", "shop-3"]
    assert api.enqueue_many(REFS, job_ids=ids, settings=settings) == ids
    assert api.enqueue_many(REFS, job_ids=ids, settings=settings) == ids
    record = api.get_job("shop-2", settings=settings)
    assert record is not None and record.reference == "/data/b.png"
    assert api.enqueue("/data/d.png", job_id="shop-4", settings=settings) == "shop-4"


def test_a_repeat_publishes_only_the_jobs_still_accepted(settings: Settings) -> None:
    ids = api.enqueue_many(REFS, idempotency_key="k-publish", settings=settings)
    assert queued(settings) == 3
    ledger = Ledger.from_url(settings.redis_url)
    ledger.fail(ids[0], [JobState.ACCEPTED], "fetch", "invalid_input", "gone")  # past ACCEPTED

    assert api.enqueue_many(REFS, idempotency_key="k-publish", settings=settings) == ids

    assert queued(settings) == 3 + 2  # the two ACCEPTED ones again (harmless: the claim)
    failed = api.get_job(ids[0], settings=settings)
    assert failed is not None and failed.state is JobState.FAILED  # not touched


def test_a_job_recorded_but_never_published_is_published_by_the_repeat(
        settings: Settings) -> None:
    ledger = Ledger.from_url(settings.redis_url)
    ledger.create_many([("lost-1", REFS[0])], {})  # a producer that died before publishing
    assert queued(settings) == 0
    assert api.enqueue_many(REFS[:1], job_ids=["lost-1"], settings=settings) == ["lost-1"]
    assert queued(settings) == 1


@pytest.mark.parametrize(("first", "again", "field"), [
    ({"references": REFS}, {"references": ["/data/x.png", *REFS[1:]]}, "idempotency_key"),
    ({"references": REFS}, {"references": REFS, "ErodeSize": 3}, "idempotency_key"),
    ({"references": REFS}, {"references": REFS, "batch": "other"}, "idempotency_key"),
])
def test_a_key_reused_for_other_jobs_is_refused_and_nothing_is_queued(
        settings: Settings, first: dict[str, object], again: dict[str, object],
        field: str) -> None:
    api.enqueue_many(idempotency_key="reused", settings=settings, **first)  # type: ignore[arg-type]
    before = queued(settings)
    with pytest.raises(InvalidInput) as caught:
        api.enqueue_many(idempotency_key="reused", settings=settings, **again)  # type: ignore[arg-type]
    assert caught.value.field == field and "already" in caught.value.message
    assert queued(settings) == before


@pytest.mark.parametrize(("kwargs", "field"), [
    ({"job_ids": ["a", "b"]}, "job_ids"),  # fewer ids than references
    ({"job_ids": ["a", "a", "b"]}, "job_ids"),  # twice the same id
    ({"job_ids": ["a", "", "c"]}, "job_ids"),
    ({"job_ids": ["a", "b c", "d"]}, "job_ids"),
    ({"job_ids": ["a", "b", "c"], "idempotency_key": "k"}, "idempotency_key"),  # not both
    ({"idempotency_key": ""}, "idempotency_key"),
])
def test_bad_ids_or_keys_are_refused_before_anything_is_recorded(
        settings: Settings, kwargs: dict[str, object], field: str) -> None:
    with pytest.raises(InvalidInput) as caught:
        api.enqueue_many(REFS, batch="bad", settings=settings, **kwargs)  # type: ignore[arg-type]
    assert caught.value.field == field
    assert api.batch_jobs("bad", settings=settings) == [] and queued(settings) == 0
