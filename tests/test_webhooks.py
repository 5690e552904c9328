"""Webhooks without a worker: the Standard Webhooks signature, and the outbox on the suite's real
Redis delivering to a real receiver on loopback (through the address guard), with its retries,
its give-up, and each attempt logged on the job."""

from __future__ import annotations

import random
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import pytest

from config import Settings
from picpik.errors import InvalidInput
from tasks.outputs.webhooks import DUE, WEBHOOKS_GROUP, Signer, check_webhook_url, verify
from tasks.stages.deliver import next_step
from tasks.stages.outbox import Outbox
from tasks.store.ledger import Ledger
from tasks.store.records import JobRecord, JobState
from tests.support.receiver import Receiver, signature_ok

SECRET = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"


def test_a_signature_checks_out_with_the_receivers_own_code_and_with_verify() -> None:
    body = '{"type":"job.succeeded","data":{"job_id":"j1"}}'
    headers = Signer(SECRET).headers("msg_1-0", body, datetime.now(UTC))
    assert headers["webhook-signature"].startswith("v1,")
    assert signature_ok(SECRET, headers, body.encode())
    assert verify(SECRET, body, headers)["data"]["job_id"] == "j1"
    assert not signature_ok(SECRET, headers, body.replace("j1", "j2").encode())


@pytest.mark.parametrize("signature", ["v1,!!!not-base64", "garbage-without-comma", "v1,"])
def test_a_malformed_signature_header_is_our_error_not_a_raw_one(signature: str) -> None:
    body = '{"type":"job.failed"}'
    headers = {**Signer(SECRET).headers("msg_2-0", body, datetime.now(UTC)),
               "webhook-signature": signature}
    with pytest.raises(InvalidInput) as refused:
        verify(SECRET, body, headers)
    assert refused.value.field == "webhook-signature"


def test_a_stale_timestamp_is_refused() -> None:
    body = "{}"
    headers = Signer(SECRET).headers("msg_3-0", body, datetime.fromtimestamp(1_000_000, UTC))
    with pytest.raises(InvalidInput, match="too old"):
        verify(SECRET, body, headers)


def test_a_webhook_secret_must_be_whsec_base64() -> None:
    with pytest.raises(ValueError, match="webhook_secret"):
        Settings(webhook_secret="not-a-secret")
    with pytest.raises(ValueError, match="webhook_secret"):
        Settings(webhook_secret="whsec_***")
    assert Settings(webhook_secret=SECRET).webhook_secret is not None


@pytest.mark.parametrize("url", ["ftp://example.com/x", "/relative", "http://", ""])
def test_a_webhook_url_must_be_http_with_a_host(url: str) -> None:
    with pytest.raises(InvalidInput) as refused:
        check_webhook_url(url)
    assert refused.value.field == "webhook_url"


def test_the_first_two_retries_come_within_a_minute_and_the_last_after_a_day() -> None:
    s = Settings()
    for pick in (0.0, 1.0):  # the shortest and the longest jitter
        rng = random.Random()
        rng.uniform = lambda a, b, p=pick: a + (b - a) * p  # type: ignore[method-assign]
        at, attempts, outcome = 0.0, 0, "retrying"
        started: list[float] = []
        while outcome == "retrying":
            started.append(at)
            at += s.webhook_timeout_s  # the worst case: every attempt times out
            outcome, wait = next_step(s, attempts, at, 503, rng)
            attempts += 1
            at += wait
        assert started[2] <= 60.0, started[:3]
        assert outcome == "undelivered"
        assert started[-1] >= 24 * 3600, started[-1]
        assert attempts <= 40


@pytest.fixture
def ledger(redis_url: str) -> Ledger:
    return Ledger.from_url(redis_url)


def finished_job(ledger: Ledger, job_id: str, webhook_url: str | None,
                 event: str = "job.succeeded") -> None:
    ledger.create(job_id, f"/in/{job_id}.png", {}, batch="hooks", webhook_url=webhook_url)
    if event == "job.succeeded":
        ledger.transition(job_id, [JobState.ACCEPTED], JobState.SUCCEEDED,
                          event="job.succeeded", event_fields={
                              "task_uid": "uid-" + job_id, "result_paths": ["/out/a.png"],
                              "credits": 1.0})
    else:
        ledger.fail(job_id, [JobState.ACCEPTED], "fetch", "invalid_input", "not an image",
                    field="reference")


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    with Receiver(SECRET) as running:
        yield running


def outbox_for(redis_url: str, **more: Any) -> Outbox:
    values: dict[str, Any] = {"redis_url": redis_url, "webhook_secret": SECRET,
                              "fetch_allow": "127.0.0.1", "webhook_retry_base_s": 0.05,
                              "webhook_retry_max_delay_s": 0.2, **more}
    outbox = Outbox.build(Settings(**values), consumer="test")
    outbox.start()
    return outbox


def run_until(outbox: Outbox, done: Any, timeout_s: float = 30.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not done():
        assert time.monotonic() < deadline, "the outbox did not get there"
        outbox.step()


def attempts(ledger: Ledger, job_id: str) -> list[dict[str, Any]]:
    record = ledger.get(job_id)
    assert isinstance(record, JobRecord)
    return record.webhook_attempts


def test_each_finished_job_with_a_url_gets_one_signed_delivery(
        redis_url: str, ledger: Ledger, receiver: Receiver) -> None:
    outbox = outbox_for(redis_url)
    finished_job(ledger, "ok-1", receiver.url)
    finished_job(ledger, "bad-1", receiver.url, event="job.failed")
    finished_job(ledger, "quiet-1", None)
    run_until(outbox, lambda: len(receiver.accepted()) == 2 and not outbox.courier.deliveries
              .pending())
    for _ in range(3):
        outbox.step()  # nothing more comes
    got = {d.event["data"]["job_id"]: d for d in receiver.deliveries}
    assert set(got) == {"ok-1", "bad-1"} and len(receiver.deliveries) == 2
    assert all(d.signed for d in receiver.deliveries)
    ok, bad = got["ok-1"].event, got["bad-1"].event
    assert ok["type"] == "job.succeeded" and ok["data"]["state"] == "SUCCEEDED"
    assert ok["data"]["result_paths"] == ["/out/a.png"] and ok["data"]["credits"] == 1.0
    assert bad["type"] == "job.failed"
    assert bad["data"]["error"] == {"stage": "fetch", "code": "invalid_input",
                                    "field": "reference", "message": "not an image"}
    (logged,) = attempts(ledger, "ok-1")
    assert logged["outcome"] == "delivered" and logged["status"] == 200
    assert logged["webhook_id"] == got["ok-1"].webhook_id
    assert attempts(ledger, "quiet-1") == []


def test_an_event_read_again_makes_no_second_delivery(
        redis_url: str, ledger: Ledger, receiver: Receiver) -> None:
    outbox = outbox_for(redis_url)
    finished_job(ledger, "twice-1", receiver.url)
    entries = ledger.redis.xrange("cutout:events")
    run_until(outbox, lambda: len(receiver.accepted()) == 1)
    bodies = {entry_id: (receiver.url, "{}") for entry_id, _ in entries}
    assert outbox.courier.deliveries.schedule(WEBHOOKS_GROUP, entries, bodies) == 0
    for _ in range(3):
        outbox.step()
    assert len(receiver.deliveries) == 1


def test_an_event_whose_reader_died_is_taken_over_by_another(
        redis_url: str, ledger: Ledger, receiver: Receiver) -> None:
    dead = outbox_for(redis_url)
    finished_job(ledger, "orphan-1", receiver.url)
    assert dead.webhooks.read(10, None)  # read, then the reader "dies" before handling it
    alive = outbox_for(redis_url)
    assert alive.webhooks.read(10, None) == []  # not handed out twice
    taken = alive.webhooks.reclaim(min_idle_ms=0, count=10)
    assert [f["job_id"] for _, f in taken] == ["orphan-1"]
    alive._handle([], taken)
    run_until(alive, lambda: len(receiver.accepted()) == 1)


def test_a_receiver_answering_503_twice_gets_its_event_on_the_third_attempt(
        redis_url: str, ledger: Ledger) -> None:
    with Receiver(SECRET, fail_first=2) as flaky:
        outbox = outbox_for(redis_url)
        finished_job(ledger, "flaky-1", flaky.url)
        run_until(outbox, lambda: len(flaky.accepted()) == 1)
    assert [d.status for d in flaky.deliveries] == [503, 503, 200]
    assert len({d.webhook_id for d in flaky.deliveries}) == 1  # stable across retries
    logged = attempts(ledger, "flaky-1")
    assert [(a["attempt"], a["status"], a["outcome"]) for a in logged] == [
        (1, 503, "retrying"), (2, 503, "retrying"), (3, 200, "delivered")]
    assert all(a["next_at"] for a in logged[:2]) and logged[2]["next_at"] is None


def test_a_delivery_failing_past_the_give_up_time_is_recorded_undelivered(
        redis_url: str, ledger: Ledger) -> None:
    with Receiver(SECRET, fail_first=10_000) as down:
        outbox = outbox_for(redis_url, webhook_give_up_after_s=0.5)
        finished_job(ledger, "lost-1", down.url)
        run_until(outbox, lambda: any(a["outcome"] == "undelivered"
                                      for a in attempts(ledger, "lost-1")))
    logged = attempts(ledger, "lost-1")
    assert len(logged) >= 2 and {a["outcome"] for a in logged[:-1]} == {"retrying"}
    assert outbox.courier.deliveries.pending() == 0


def test_a_callback_to_a_private_address_is_stopped_by_the_guard(
        redis_url: str, ledger: Ledger, receiver: Receiver) -> None:
    outbox = outbox_for(redis_url, fetch_allow="")
    finished_job(ledger, "private-1", receiver.url)
    run_until(outbox, lambda: attempts(ledger, "private-1"))
    (logged,) = attempts(ledger, "private-1")
    assert logged["status"] is None and "not a public address" in logged["error"]
    assert logged["outcome"] == "retrying"
    assert receiver.deliveries == []


def test_without_a_secret_nothing_is_sent_and_the_deliveries_wait(
        redis_url: str, ledger: Ledger, receiver: Receiver) -> None:
    outbox = outbox_for(redis_url, webhook_secret=None)
    finished_job(ledger, "unsigned-1", receiver.url)
    run_until(outbox, lambda: outbox.courier.deliveries.pending() == 1)
    for _ in range(3):
        outbox.step()
    assert receiver.deliveries == [] and attempts(ledger, "unsigned-1") == []
    signed = outbox_for(redis_url)
    run_until(signed, lambda: len(receiver.accepted()) == 1)


def test_the_python_api_and_the_cli_record_a_webhook_url_and_refuse_a_bad_one(
        redis_url: str, ledger: Ledger, tmp_path: Any) -> None:
    import subprocess

    from producers import api
    from tests.support.serve_process import CUTOUT
    from tests.support.workers import settings_env, write_pngs

    (image,) = write_pngs(tmp_path, 1)
    settings = Settings(redis_url=redis_url, _env_file=None)  # type: ignore[call-arg]
    (job_id,) = api.enqueue_many([str(image)], batch="hooked", settings=settings,
                                 webhook_url="https://hooks.example.com/cutout")
    record = ledger.get(job_id)
    assert record is not None and record.webhook_url == "https://hooks.example.com/cutout"
    with pytest.raises(InvalidInput):
        api.enqueue(str(image), settings=settings, webhook_url="ftp://hooks.example.com/")
    env = settings_env({"redis_url": redis_url})
    refused = subprocess.run([str(CUTOUT), "enqueue", str(image), "--batch", "cli-hook",
                              "--webhook", "ftp://hooks.example.com/"], env=env, text=True,
                             capture_output=True, timeout=60, check=False)
    assert refused.returncode == 2
    assert "field webhook_url" in refused.stderr and "nothing was queued" in refused.stderr
    queued = subprocess.run([str(CUTOUT), "enqueue", str(image), "--batch", "cli-hook",
                             "--webhook", "http://hooks.example.com/x"], env=env, text=True,
                            capture_output=True, timeout=60, check=False)
    assert queued.returncode == 0, queued.stderr
    (cli_job,) = ledger.batch_ids("cli-hook")
    assert ledger.get(cli_job).webhook_url == "http://hooks.example.com/x"  # type: ignore[union-attr]


def test_a_round_folds_every_event_and_hands_back_only_those_of_jobs_naming_a_url(
        redis_url: str, ledger: Ledger) -> None:
    from tasks.store.event_rounds import EventRounds
    from tasks.store.metrics import METRICS_GROUP, read_event_totals

    outbox = outbox_for(redis_url)
    finished_job(ledger, "named-1", "http://127.0.0.1:9/hook")
    finished_job(ledger, "plain-1", None)
    finished_job(ledger, "plain-2", None, event="job.failed")
    rounds = EventRounds(ledger.redis, ("job.succeeded", "job.failed"))
    groups = (METRICS_GROUP, WEBHOOKS_GROUP)
    done = rounds.run(groups, "test", 200, None)
    assert done.read == 3 and done.last_id == ledger.redis.xrevrange("cutout:events")[0][0]
    assert [(f["type"], f["job_id"]) for _, f in done.named] == [("job.succeeded", "named-1")]
    assert read_event_totals(ledger.redis, time.time()).finished["job.succeeded"] == 2
    pending = ledger.redis.xpending("cutout:events", WEBHOOKS_GROUP)["pending"]
    assert pending == 1  # the named job's event waits for its delivery; the others are done
    assert ledger.redis.xpending("cutout:events", METRICS_GROUP)["pending"] == 0
    waited = rounds.run(groups, "test", 200, (done.last_id, 50))  # nothing new: waits, reads 0
    assert (waited.read, waited.named, waited.last_id) == (0, [], done.last_id)
    assert waited.next_due_s is None  # not asked
    outbox._schedule_webhooks(done.named)  # as the outbox's step does after its round
    assert ledger.redis.xpending("cutout:events", WEBHOOKS_GROUP)["pending"] == 0
    assert outbox.courier.deliveries.pending() == 1
    assert rounds.run(groups, "test", 200, None, due_key=DUE).next_due_s == 0.0  # due now
