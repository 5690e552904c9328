"""The stages' own rules, called directly on the suite's Redis and the real local API server
(no worker): stale messages change nothing, a poisoned poll batch ends, collect errors end,
a job that failed at collect is collected again without paying, the durability check, and
when a lapsed claim whose call started may be claimed again, and an attempt that lost its
claim leaves the credits it did not book alone."""

from __future__ import annotations

import time
import uuid
from pathlib import Path

import pytest
import redis

from config import Settings
from picpik.models import parse_options
from producers import api
from tasks.stages.collect import collect_due, collect_job
from tasks.stages.poll import poll_batch
from tasks.stages.runtime import Runtime
from tasks.stages.submit import persist_job, submit_job
from tasks.store.claims import ClaimLost, begin_call, claim, mark_sent
from tasks.store.durability import durability_of
from tasks.store.ledger import Ledger, job_key
from tasks.store.records import JobState
from tests.support.emulator_server import EmulatorProcess, emulator, emulator_process, image_bytes
from tests.support.redis_server import RedisServer
from tests.support.workers import ImageServer, write_pngs

__all__ = ["emulator", "emulator_process"]


@pytest.fixture
def rt(redis_url: str, emulator: EmulatorProcess, tmp_path: Path) -> Runtime:
    settings = Settings(redis_url=redis_url, api_base_url=emulator.base_url,
                        public_key=emulator.public_key, private_key=emulator.private_key,
                        output_dir=tmp_path / "out", poll_interval_s=0.01, max_retries=3,
                        retry_base_delay_s=0.01, retry_max_delay_s=0.02)
    return Runtime.build(settings)


def _submitted(rt: Runtime, reference: str = "/in/photo.png") -> tuple[str, str]:
    """A job the API really took: (job id, TaskUID), SUBMITTED and due to be polled now."""
    job_id = str(uuid.uuid4())
    rt.ledger.create(job_id, reference, {})
    answer = rt.client.remove_background(image_bytes(), "image/png", parse_options({}),
                                         request_uuid=job_id)
    rt.ledger.transition(job_id, [JobState.ACCEPTED], JobState.SUBMITTED,
                         fields={"task_uid": answer.task_uid}, poll_in_s=0.0)
    return job_id, answer.task_uid


def _poll_until_quiet(rt: Runtime, rounds: int = 60) -> int:
    """Poll round after round until nothing is due any more; the calls made."""
    calls = 0
    for _ in range(rounds):
        time.sleep(0.15)  # the local server's tasks finish after 0.15 s
        calls += poll_batch(rt).calls
        if rt.schedule.size() == 0:
            break
    return calls


def test_a_stale_persist_from_an_earlier_attempt_changes_nothing(rt: Runtime) -> None:
    rt.ledger.create("j1", "a.png", {})
    rt.ledger.transition("j1", [JobState.ACCEPTED], JobState.SUBMITTING,
                         fields={"task_uid": "T-new"})
    assert persist_job(rt, "j1", "T-old") is JobState.SUBMITTING  # the old attempt's message
    assert persist_job(rt, "j1", "T-new") is JobState.SUBMITTED
    record = rt.ledger.get("j1")
    assert record is not None and record.task_uid == "T-new"
    assert [e["task_uid"] for e in rt.ledger.events()] == ["T-new"]


def test_a_collect_due_for_a_job_that_started_over_changes_nothing(rt: Runtime) -> None:
    job_id, _ = _submitted(rt)
    _poll_until_quiet(rt)
    assert collect_due(rt, 10) == [job_id]
    # Meanwhile the job started over (its old task and results cleared, as a retry does).
    rt.ledger.transition(job_id, [JobState.SUBMITTED], JobState.ACCEPTED,
                         clear=["task_uid", "result_urls"])
    assert collect_job(rt, job_id) is JobState.ACCEPTED
    record = rt.ledger.get(job_id)
    assert record is not None and not record.result_paths
    assert rt.collect_schedule.size() == 0


def test_one_unreadable_entry_is_isolated_and_fails_only_its_own_job(
        rt: Runtime, emulator: EmulatorProcess) -> None:
    healthy = [_submitted(rt)[0] for _ in range(7)]
    emulator.configure(faults={"bad_detail": 1.0})
    poisoned, _ = _submitted(rt)
    emulator.configure(faults={"bad_detail": 0.0})
    calls = _poll_until_quiet(rt)
    records = {r.job_id: r for r in rt.ledger.get_many([*healthy, poisoned]) if r}
    bad = records.pop(poisoned)
    assert (bad.state, bad.error_stage, bad.error_code) == (
        JobState.FAILED, "poll", "malformed_answer")
    assert bad.error_message is not None and "asked about alone" in bad.error_message
    assert all(r.result_urls for r in records.values())  # all others finished, to collect
    print(f"\n8 jobs, one poisoned: {calls} ListTasksDetails calls until it was isolated")


def test_a_failed_call_still_fails_jobs_past_their_deadline(
        rt: Runtime, emulator: EmulatorProcess) -> None:
    job_id, _ = _submitted(rt)
    rt.redis.hset(job_key(job_id), "submitted_at", time.time() - 10 * 3600)  # long ago
    emulator.configure(faults={"error_5xx": 1.0})
    assert poll_batch(rt).failed == 1
    record = rt.ledger.get(job_id)
    assert record is not None and (record.state, record.error_code) == (
        JobState.FAILED, "deadline")


def test_an_unwritable_output_fails_after_the_retries_and_retry_collects_without_paying(
        rt: Runtime, emulator: EmulatorProcess, tmp_path: Path) -> None:
    blocker = tmp_path / "out"
    blocker.write_text("a file where the output folder should be")
    rt.ledger.create("j1", "/in/photo.png", {}, batch="b")
    answer = rt.client.remove_background(image_bytes(), "image/png", parse_options({}),
                                         request_uuid="j1")
    rt.ledger.transition("j1", [JobState.ACCEPTED], JobState.SUBMITTED,
                         fields={"task_uid": answer.task_uid}, poll_in_s=0.0)
    _poll_until_quiet(rt)
    for _ in range(rt.settings.max_retries + 1):
        time.sleep(0.05)  # the backoff (at most 0.02 s here)
        for job_id in collect_due(rt, 10):
            collect_job(rt, job_id)
    record = rt.ledger.get("j1")
    assert record is not None
    assert (record.state, record.error_stage) == (JobState.FAILED, "collect")
    assert record.error_message is not None and "gave up after 4 attempts" in record.error_message
    assert rt.collect_schedule.size() == 0  # no endless retries

    blocker.unlink()  # the operator frees the folder, then: cutout retry
    assert api.retry_failed("b", settings=rt.settings) == ["j1"]
    _poll_until_quiet(rt)
    for job_id in collect_due(rt, 10):
        collect_job(rt, job_id)
    record = rt.ledger.get("j1")
    assert record is not None and record.state is JobState.SUCCEEDED
    assert Path(record.result_paths[0]).is_file()
    assert emulator.paid_by_job()["j1"] == 1


def test_a_write_never_creates_a_job_and_a_fragment_reads_as_no_job(rt: Runtime) -> None:
    assert rt.ledger.transition("ghost", [JobState.SUBMITTING], JobState.SUBMITTED,
                                fields={"task_uid": "T"}) == (False, None)
    assert not rt.redis.exists(job_key("ghost"))
    rt.redis.hset(job_key("fragment"), "task_uid", "T")  # as a crash might leave one
    assert rt.ledger.get("fragment") is None and rt.ledger.get_many(["fragment"]) == [None]


def test_durability_is_guaranteed_only_by_appendfsync_always_on_this_redis(
        tmp_path: Path) -> None:
    for fsync, guaranteed in (("always", True), ("everysec", False)):
        server = RedisServer(directory=tmp_path / fsync, appendfsync=fsync)
        (tmp_path / fsync).mkdir()
        server.start()
        try:
            found = durability_of(redis.Redis(port=server.port))
        finally:
            server.kill()
        assert found.guaranteed is guaranteed or found.waitaof  # WAITAOF on 7.2+
        assert (found.warning() is None) is found.guaranteed


@pytest.mark.parametrize(("fsync", "after_restart"), [("always", "claimed"),
                                                      ("everysec", "unknown")])
def test_a_start_never_sent_is_claimed_again_unless_sent_or_the_mark_may_be_lost(
        fsync: str, after_restart: str, tmp_path: Path) -> None:
    server = RedisServer(directory=tmp_path, appendfsync=fsync)
    server.start()
    try:
        ledger = Ledger(redis.Redis(port=server.port, decode_responses=True))
        durable = durability_of(ledger.redis)
        never_sent, sent, restarted = "never-sent", "sent", "restarted"
        for job_id in (never_sent, sent, restarted):
            ledger.create(job_id, f"/in/{job_id}.png", {})
            assert claim(ledger, job_id, lease_s=0.05, owner="a").verdict == "claimed"
            assert begin_call(ledger, job_id, "a", durable)
        mark_sent(ledger, sent, "a")
        time.sleep(0.1)  # every lease lapses: the owner "died"
        assert claim(ledger, never_sent, lease_s=5, owner="b").verdict == "claimed"
        with pytest.raises(ClaimLost):  # "a" woke up late: its request must not leave
            mark_sent(ledger, never_sent, "a")
        assert claim(ledger, sent, lease_s=5, owner="b").verdict == "unknown"
        # The AOF keeps the start (durable); a mark is on disk too only with `always`.
        server.restart()
        assert claim(ledger, restarted, lease_s=5, owner="b").verdict == after_restart
    finally:
        server.kill()


def test_an_attempt_that_lost_its_claim_leaves_the_new_owners_credits_reserved(
        redis_url: str, emulator: EmulatorProcess, tmp_path: Path) -> None:
    [image] = write_pngs(tmp_path / "in", 1)
    rt = Runtime.build(Settings(
        redis_url=redis_url, api_base_url=emulator.base_url, public_key=emulator.public_key,
        private_key=emulator.private_key, files_root=tmp_path, fetch_allow="127.0.0.1",
        daily_credit_budget=100_000))
    job_id = str(uuid.uuid4())
    reserved_before = rt.budgets.today().reserved
    with ImageServer(image.parent) as server:
        rt.ledger.create(job_id, f"{server.url}/{image.name}", {})

        def taken_over(path: str) -> None:
            """While this attempt fetches, its lease lapses and another worker ("b") takes
            the job and books its credits."""
            rt.redis.hset(job_key(job_id), "lease_until", "0")
            assert claim(rt.ledger, job_id, lease_s=30, owner="b").verdict == "claimed"
            assert rt.budgets.reserve(job_id, 1.0).verdict == "ok"

        server.server.on_file = taken_over
        outcome = submit_job(rt, job_id)
    assert outcome.retry_in_s is not None and outcome.task_uid is None  # it stood aside
    assert rt.budgets.today().reserved == reserved_before + 1.0  # b's call keeps its credits
    assert job_id not in {c["request_uuid"] for c in emulator.calls(action="RemoveBackground")}
