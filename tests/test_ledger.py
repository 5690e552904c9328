"""The ledger on a real Redis: records, atomic transitions, batch counts, the events stream,
the claim that makes duplicate messages harmless, the poll schedule, and the sweeper."""

from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor

import pytest
import redis

from config import Settings
from picpik.errors import Unavailable
from tasks.stages.runtime import Runtime
from tasks.stages.submit import give_up
from tasks.stages.sweep import sweep
from tasks.store.claims import claim
from tasks.store.ledger import (
    EVENTS_STREAM,
    OPEN_JOBS,
    POLL_SCHEDULE,
    RECONCILE_JOBS,
    Ledger,
    job_key,
    redis_now,
)
from tasks.store.records import JobRecord, JobState
from tasks.store.schedule import DueSchedule, TickMarker


@pytest.fixture
def ledger(redis_url: str) -> Ledger:
    return Ledger.from_url(redis_url)


def test_a_created_job_reads_back_as_accepted_with_its_options(ledger: Ledger) -> None:
    assert ledger.create("j1", "/in/photo.png", {"Box": [1, 2, 3, 4]}, batch="b",
                         output_dir="/out")
    record = ledger.get("j1")
    assert isinstance(record, JobRecord)
    assert (record.state, record.reference, record.options) == (
        JobState.ACCEPTED, "/in/photo.png", {"Box": [1, 2, 3, 4]})
    assert (record.batch, record.output_dir, record.attempts) == ("b", "/out", 0)
    assert record.created_at is not None and record.task_uid is None


def test_creating_an_existing_job_again_changes_nothing(ledger: Ledger) -> None:
    assert ledger.create("j1", "a.png", {})
    assert not ledger.create("j1", "b.png", {"OnlyMask": True})
    record = ledger.get("j1")
    assert record is not None and record.reference == "a.png" and record.options == {}


def test_a_transition_from_a_state_not_allowed_is_refused(ledger: Ledger) -> None:
    ledger.create("j1", "a.png", {})
    done, state = ledger.transition("j1", [JobState.SUBMITTED], JobState.SUCCEEDED)
    assert (done, state) == (False, JobState.ACCEPTED)
    assert ledger.transition("nope", [JobState.ACCEPTED], JobState.FAILED) == (False, None)


def test_a_transition_whose_expected_fields_do_not_hold_is_refused(ledger: Ledger) -> None:
    ledger.create("j1", "a.png", {})
    ledger.redis.hset(job_key("j1"), "task_uid", "T-new")
    assert ledger.transition("j1", [JobState.ACCEPTED], JobState.SUBMITTED,
                             expect={"task_uid": "T-old"}) == (False, JobState.ACCEPTED)
    assert ledger.transition("j1", [JobState.ACCEPTED], JobState.SUBMITTED,
                             expect={"task_uid": "T-new", "lease_owner": ""}) == (
        True, JobState.SUBMITTED)


def test_batch_counts_follow_every_transition(ledger: Ledger) -> None:
    ledger.create_many([("a", "a.png"), ("b", "b.png"), ("c", "c.png")], {}, batch="night")
    ledger.transition("a", [JobState.ACCEPTED], JobState.SUBMITTING)
    ledger.fail("b", [JobState.ACCEPTED], "fetch", "invalid_input", "no such file")
    assert ledger.batch_counts("night") == {"ACCEPTED": 1, "SUBMITTING": 1, "FAILED": 1}
    assert ledger.batch_ids("night") == ["a", "b", "c"]


def test_only_one_of_many_concurrent_transitions_wins_and_emits_one_event(
        ledger: Ledger) -> None:
    ledger.create("j1", "a.png", {})

    def attempt(_: int) -> bool:
        done, _state = ledger.transition(
            "j1", [JobState.ACCEPTED], JobState.SUBMITTED, fields={"task_uid": "T1"},
            event="job.submitted", event_fields={"task_uid": "T1"})
        return done

    with ThreadPoolExecutor(8) as pool:
        results = list(pool.map(attempt, range(32)))
    assert results.count(True) == 1
    events = ledger.events()
    assert [(e["type"], e["task_uid"], e["job_id"]) for e in events] == [
        ("job.submitted", "T1", "j1")]


def test_a_failure_is_recorded_with_stage_code_field_and_message_and_streamed(
        ledger: Ledger, redis_url: str) -> None:
    ledger.create("j1", "a.png", {}, batch="b")
    ledger.redis.zadd(POLL_SCHEDULE, {"j1": 1.0})
    assert ledger.fail("j1", [JobState.ACCEPTED], "fetch", "invalid_input", "not an image",
                       field="reference")
    record = ledger.get("j1")
    assert record is not None
    assert (record.state, record.error_stage, record.error_code, record.error_field,
            record.error_message) == (JobState.FAILED, "fetch", "invalid_input", "reference",
                                      "not an image")
    assert record.finished_at is not None
    (event,) = ledger.events()
    assert (event["type"], event["error_stage"], event["error_message"], event["batch"]) == (
        "job.failed", "fetch", "not an image", "b")
    assert redis.Redis.from_url(redis_url).zscore(POLL_SCHEDULE, "j1") is None


def test_submitted_puts_the_job_on_the_poll_schedule_in_the_same_step(ledger: Ledger) -> None:
    ledger.create("j1", "a.png", {})
    ledger.transition("j1", [JobState.ACCEPTED], JobState.SUBMITTED, poll_in_s=0.0)
    assert DueSchedule(ledger.redis, POLL_SCHEDULE).claim_due(10, 30) == ["j1"]


def test_a_claimed_job_cannot_be_claimed_again_by_a_duplicate(ledger: Ledger) -> None:
    ledger.create("j1", "a.png", {})
    assert claim(ledger, "j1", 30, "owner").verdict == "claimed"
    second = claim(ledger, "j1", 30, "owner")
    assert second.verdict == "busy" and 0 < second.busy_for_s <= 30
    record = ledger.get("j1")
    assert record is not None and record.attempts == 1 and record.state is JobState.SUBMITTING


def test_a_job_with_a_task_uid_is_persisted_not_submitted_again(ledger: Ledger) -> None:
    ledger.create("j1", "a.png", {})
    claim(ledger, "j1", 30, "owner")
    ledger.redis.hset(job_key("j1"), mapping={"call_started_at": 1.0, "task_uid": "T9"})
    verdict = claim(ledger, "j1", 30, "owner")
    assert (verdict.verdict, verdict.task_uid) == ("persist", "T9")


def test_an_expired_lease_after_a_started_call_is_unknown_not_claimable(ledger: Ledger) -> None:
    ledger.create("j1", "a.png", {})
    claim(ledger, "j1", 0.001, "owner")
    ledger.redis.hset(job_key("j1"), "call_started_at", 1.0)
    time.sleep(0.01)
    assert claim(ledger, "j1", 30, "owner").verdict == "unknown"


def test_an_expired_lease_before_any_call_can_be_claimed_again(ledger: Ledger) -> None:
    ledger.create("j1", "a.png", {})
    claim(ledger, "j1", 0.001, "owner")
    time.sleep(0.01)
    assert claim(ledger, "j1", 30, "owner").verdict == "claimed"
    assert claim(ledger, "missing", 30, "owner").verdict == "missing"


def test_finished_jobs_are_not_claimed(ledger: Ledger) -> None:
    ledger.create("j1", "a.png", {})
    ledger.fail("j1", [JobState.ACCEPTED], "fetch", "invalid_input", "bad")
    verdict = claim(ledger, "j1", 30, "owner")
    assert (verdict.verdict, verdict.state) == ("done", JobState.FAILED)


def test_due_jobs_are_claimed_by_one_poller_only(redis_url: str) -> None:
    client = redis.Redis.from_url(redis_url, decode_responses=True)
    client.zadd(POLL_SCHEDULE, {f"j{i}": 0 for i in range(250)})
    client.zadd(POLL_SCHEDULE, {"later": 2e10})
    schedule = DueSchedule(client, POLL_SCHEDULE)
    with ThreadPoolExecutor(4) as pool:
        batches = list(pool.map(lambda _: schedule.claim_due(100, 30), range(4)))
    claimed = [job for batch in batches for job in batch]
    assert sorted(len(b) for b in batches) == [0, 50, 100, 100]
    assert len(set(claimed)) == 250 and "later" not in claimed
    assert schedule.status()[0] == 0


def test_the_tick_marker_has_one_owner_and_passes_on(redis_url: str) -> None:
    ticks = TickMarker(redis.Redis.from_url(redis_url, decode_responses=True))
    assert ticks.start("a", 1.0, 30) and not ticks.start("b", 1.0, 30)
    assert not ticks.owns_or_adopts("b", 30) and ticks.owns_or_adopts("a", 30)
    assert ticks.hand_over("a", "c", 1.0, 30) and not ticks.hand_over("a", "d", 1.0, 30)
    ticks.release("c")
    assert ticks.owns_or_adopts("z", 30)


def test_a_loop_sleeping_long_is_replaced_by_one_that_polls_sooner(redis_url: str) -> None:
    ticks = TickMarker(redis.Redis.from_url(redis_url, decode_responses=True))
    assert ticks.hand_over("", "sleepy", 25.0, 60) or ticks.start("sleepy", 25.0, 60)
    assert ticks.start("eager", 0.5, 30, slack_s=0.25)
    assert not ticks.owns_or_adopts("sleepy", 30)  # its message will find itself stale
    assert not ticks.start("third", 0.5, 30, slack_s=0.25)


def test_a_loop_long_overdue_is_presumed_dead_and_replaced(redis_url: str) -> None:
    ticks = TickMarker(redis.Redis.from_url(redis_url, decode_responses=True))
    assert ticks.start("dead", 0.0, 60)
    time.sleep(0.05)
    assert not ticks.start("patient", 0.0, 60, grace_s=5)
    assert ticks.start("new", 0.0, 60, grace_s=0.01)


def test_events_go_to_the_documented_stream() -> None:
    assert EVENTS_STREAM == "cutout:events"


def test_open_jobs_are_indexed_until_they_end(ledger: Ledger) -> None:
    ledger.create_many([("a", "a.png"), ("b", "b.png")], {})
    ledger.transition("a", [JobState.ACCEPTED], JobState.SUBMITTING)
    ledger.fail("b", [JobState.ACCEPTED], "fetch", "invalid_input", "bad")
    assert ledger.redis.zrange(OPEN_JOBS, 0, -1) == ["a"]


def test_jobs_needing_reconciliation_are_indexed_until_they_leave_that_state(
        ledger: Ledger) -> None:
    ledger.create("j1", "a.png", {})
    ledger.fail("j1", [JobState.ACCEPTED], "submit", "unknown_outcome", "answer lost",
                to=JobState.NEEDS_RECONCILIATION)
    assert ledger.redis.zrange(RECONCILE_JOBS, 0, -1) == ["j1"]
    ledger.transition("j1", [JobState.NEEDS_RECONCILIATION], JobState.SUBMITTED,
                      fields={"task_uid": "t1"})
    assert ledger.redis.zrange(RECONCILE_JOBS, 0, -1) == []


def test_the_sweeper_resubmits_only_jobs_that_lost_their_message(redis_url: str) -> None:
    rt = Runtime.build(Settings(redis_url=redis_url, visibility_timeout_s=60,
                                task_time_limit_s=30))
    ledger = rt.ledger
    ledger.create_many([(j, f"{j}.png") for j in "abcdef"], {})
    claim(ledger, "b", 0.001, "owner")  # a claim whose lease runs out (its worker died)
    claim(ledger, "c", 600, "owner")  # a claim still held
    ledger.transition("d", [JobState.ACCEPTED], JobState.SUBMITTED, fields={"task_uid": "T"})
    ledger.fail("e", [JobState.ACCEPTED], "fetch", "invalid_input", "bad")
    ledger.redis.zadd(OPEN_JOBS, dict.fromkeys("acd", 0.0))  # these have not moved for ages
    time.sleep(0.01)  # b's lease is over
    found = sweep(rt)
    # a: stale with no claim (its message may be lost, however long the queue); b: its
    # worker stopped renewing; c is held, d is back on the poll schedule, f is fresh.
    assert sorted(found.resubmit) == [("a", "a.png"), ("b", "b.png")]
    assert found.rescheduled == ["d"]
    assert ledger.redis.zscore(POLL_SCHEDULE, "d") is not None
    assert sweep(rt).resubmit == []  # looked at just now: left alone for a while


def test_a_lease_renewed_by_its_living_process_is_never_swept(redis_url: str) -> None:
    rt = Runtime.build(Settings(redis_url=redis_url, lease_s=3))
    rt.ledger.create("j1", "a.png", {})
    claim(rt.ledger, "j1", 0.05, "me")
    with rt.leases.holding("j1", "me"):
        assert rt.leases.renew_now() == 1
        time.sleep(0.1)  # the first lease would be over by now
        assert sweep(rt).resubmit == []
    record = rt.ledger.get("j1")
    assert record is not None and record.lease_until is not None
    assert record.lease_until > redis_now(rt.redis)


def test_a_finished_job_off_every_schedule_goes_back_to_collection(redis_url: str) -> None:
    rt = Runtime.build(Settings(redis_url=redis_url, visibility_timeout_s=60,
                                task_time_limit_s=30))
    rt.ledger.create("j1", "a.png", {})
    rt.ledger.transition("j1", [JobState.ACCEPTED], JobState.SUBMITTED,
                         fields={"task_uid": "T", "result_urls": ["http://r/1.png"]})
    rt.ledger.redis.zadd(OPEN_JOBS, {"j1": 0.0})
    assert sweep(rt).rescheduled == ["j1"]
    assert rt.collect_schedule.claim_due(10, 30) == ["j1"]


def test_giving_up_after_the_last_retry_fails_an_accepted_job_but_never_a_submitted_one(
        redis_url: str) -> None:
    rt = Runtime.build(Settings(redis_url=redis_url))
    rt.ledger.create_many([("idle", "a.png"), ("paid", "b.png")], {})
    rt.ledger.transition("paid", [JobState.ACCEPTED], JobState.SUBMITTED, fields={"task_uid": "T"})
    error = Unavailable("source answered HTTP 503", field="reference")
    for job_id in ("idle", "paid"):
        give_up(rt, job_id, "submit", error, 8)
    idle, paid = rt.ledger.get_many(["idle", "paid"])
    assert idle is not None and paid is not None
    assert (idle.state, idle.error_code, idle.error_field) == (
        JobState.FAILED, "unavailable", "reference")
    assert idle.error_message == "gave up after 8 retries: source answered HTTP 503"
    assert paid.state is JobState.SUBMITTED and paid.error_message is None


def test_a_partial_read_has_the_named_fields_and_no_fragment_is_a_job(ledger: Ledger) -> None:
    ledger.create("j1", "/in/photo.png", {"OnlyMask": True}, webhook_url="http://h/x")
    ledger.redis.hset("cutout:job:fragment", "task_uid", "t1")  # no job_id, no state
    record, missing, fragment = ledger.get_many_partial(["j1", "nope", "fragment"],
                                                        ["options", "task_uid"])
    assert missing is None and fragment is None and record is not None
    assert (record.job_id, record.state, record.options) == ("j1", JobState.ACCEPTED,
                                                            {"OnlyMask": True})
    assert record.reference == "" and record.webhook_url is None  # not read
    assert ledger.get_partial("j1", ["reference"]) == JobRecord(
        job_id="j1", reference="/in/photo.png", state=JobState.ACCEPTED)


def test_one_look_at_a_schedule_claims_the_due_jobs_or_tells_how_long_to_wait(
        redis_url: str) -> None:
    client = redis.Redis.from_url(redis_url, decode_responses=True)
    schedule = DueSchedule(client, POLL_SCHEDULE)
    assert schedule.claim_or_wait(5, 30) == ([], None)
    client.zadd(POLL_SCHEDULE, {"later": redis_now(client) + 20, "0": 0, "due": 1})
    client.hset("cutout:job:due", mapping={"job_id": "due", "state": "SUBMITTED"})
    assert schedule.claim_or_wait(5, 30, "cutout:job:", ["state", "task_uid"]) == (
        [("0", {}), ("due", {"state": "SUBMITTED"})], None)  # an id like a number too
    ids, wait = schedule.claim_or_wait(5, 30)
    assert ids == [] and wait is not None and 15 < wait <= 20


def test_scripts_sent_together_run_once_each_even_when_redis_forgot_them(
        ledger: Ledger) -> None:
    from tasks.store.scripts import run_scripts

    count = ledger.redis.register_script("return redis.call('INCR', KEYS[1])")
    echo = ledger.redis.register_script("return ARGV[1]")
    assert run_scripts(ledger.redis, [(count, ["n"], []), (echo, [], ["x"])]) == [1, "x"]
    ledger.redis.script_flush()  # as after a restart of Redis
    assert run_scripts(ledger.redis, [(count, ["n"], []), (echo, [], ["y"])]) == [2, "y"]
    assert ledger.redis.get("n") == "2"
