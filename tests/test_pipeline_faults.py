"""Faults on the way: transient API errors and throttles are retried without paying twice,
an answer lost after the API took the call is never re-paid, a worker killed with SIGKILL
loses no job, and a job whose message was lost is found by the sweeper."""

from __future__ import annotations

import time
from collections import Counter
from pathlib import Path

from config import Settings
from producers import api
from tasks.store.ledger import Ledger
from tasks.store.records import JobState
from tests.support.emulator_server import EmulatorProcess, emulator, emulator_process
from tests.support.workers import pipeline_running, write_pngs

__all__ = ["emulator", "emulator_process"]


def _state(settings: Settings, job_id: str) -> JobState | None:
    record = api.get_job(job_id, settings=settings)
    return record.state if record else None


def test_transient_errors_and_throttles_are_retried_and_each_job_is_paid_once(
        redis_url: str, emulator: EmulatorProcess, tmp_path: Path) -> None:
    emulator.configure(faults={"error_5xx": 0.3, "throttle": 0.2})
    with pipeline_running(redis_url, emulator, tmp_path, count=1, concurrency=4,
                          poll_interval_s=0.3) as pipeline:
        files = write_pngs(pipeline.inputs, 30)
        ids = api.enqueue_many([str(p) for p in files], settings=pipeline.settings)
        records = api.wait(ids, timeout_s=90, settings=pipeline.settings)
    assert {r.state for r in records.values()} == {JobState.SUCCEEDED}
    assert emulator.paid_by_job() == dict.fromkeys(ids, 1)
    outcomes = Counter(c["outcome"] for c in emulator.calls(action="RemoveBackground"))
    assert outcomes["fault_5xx"] + outcomes["throttled"] > 0  # the faults did happen
    assert max(r.attempts for r in records.values()) > 1


def test_an_answer_lost_after_the_api_took_the_call_is_never_paid_again(
        redis_url: str, emulator: EmulatorProcess, tmp_path: Path) -> None:
    emulator.configure(faults={"drop_after": 1.0})
    with pipeline_running(redis_url, emulator, tmp_path, count=1, concurrency=2) as pipeline:
        files = write_pngs(pipeline.inputs, 3)
        ids = api.enqueue_many([str(p) for p in files], settings=pipeline.settings)
        records = api.wait(ids, timeout_s=60, settings=pipeline.settings)
        time.sleep(1.0)  # room for a wrong retry to show up
        events = Ledger.from_url(pipeline.settings.redis_url).events()
    for record in records.values():
        assert record.state is JobState.NEEDS_RECONCILIATION
        assert (record.error_stage, record.error_code) == ("submit", "unknown_outcome")
        assert record.error_message and "may have accepted" in record.error_message
    assert emulator.paid_by_job() == dict.fromkeys(ids, 1)
    assert sorted(e["job_id"] for e in events if e["type"] == "job.needs_reconciliation") == \
        sorted(ids)


def test_a_killed_worker_or_a_lost_message_loses_no_job_and_pays_none_twice(
        redis_url: str, emulator: EmulatorProcess, tmp_path: Path) -> None:
    # A short visibility timeout so the dead worker's messages come back within the test.
    with pipeline_running(redis_url, emulator, tmp_path, count=2, concurrency=2,
                          rate_limit=20, visibility_timeout_s=15, task_time_limit_s=5,
                          fetch_timeout_s=1, read_timeout_s=2, connect_timeout_s=1,
                          poll_interval_s=0.5, poll_max_interval_s=2) as pipeline:
        files = write_pngs(pipeline.inputs, 61)
        ids = api.enqueue_many([str(p) for p in files[:60]], settings=pipeline.settings)
        # A job whose message was lost (say its producer died right after recording it):
        # the sweeper must find it.
        Ledger.from_url(pipeline.settings.redis_url).create("orphan", str(files[60]), {})
        deadline = time.monotonic() + 30
        while _state(pipeline.settings, ids[10]) is JobState.ACCEPTED:
            assert time.monotonic() < deadline
            time.sleep(0.05)
        pipeline.workers[0].kill()
        records = api.wait([*ids, "orphan"], timeout_s=120, settings=pipeline.settings)
    assert records.pop("orphan").state is JobState.SUCCEEDED
    states = Counter(str(r.state) for r in records.values())
    assert set(states) <= {"SUCCEEDED", "NEEDS_RECONCILIATION"}, states
    paid = emulator.paid_by_job()
    assert all(paid[job_id] <= 1 for job_id in ids)
    assert all(paid[r.job_id] == 1 for r in records.values() if r.state is JobState.SUCCEEDED)
    print(f"\nafter a SIGKILL mid-batch: {dict(states)}")
