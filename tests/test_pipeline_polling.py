"""Batched polling: many TaskUIDs per ListTasksDetails call, backoff while tasks stay pending,
a deadline after which a job fails with a clear reason, failed tasks reported as such."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

import redis

from producers import api
from tasks.store.ledger import Ledger
from tasks.store.records import JobState
from tasks.store.schedule import TICK_KEY
from tests.support.emulator_server import (
    EmulatorProcess,
    emulator,
    emulator_process,
    image_data_uri,
)
from tests.support.workers import pipeline_running, write_pngs

__all__ = ["emulator", "emulator_process"]


def test_two_hundred_jobs_in_flight_need_few_list_tasks_details_calls(
        redis_url: str, emulator: EmulatorProcess, tmp_path: Path) -> None:
    emulator.configure(queue_s=1.0, run_s=4.0)  # every task stays in flight for 5 s
    with pipeline_running(redis_url, emulator, tmp_path, count=1, concurrency=4,
                          rate_limit=100, poll_interval_s=1, poll_max_interval_s=4,
                          poll_batch_size=100) as pipeline:
        files = write_pngs(pipeline.inputs, 200)
        seen: list[int] = []
        ids = api.enqueue_many([str(p) for p in files], batch="poll", settings=pipeline.settings)
        records = api.wait(ids, timeout_s=120, settings=pipeline.settings,
                           on_progress=lambda counts: seen.append(counts.get("SUBMITTED", 0)))
    assert {r.state for r in records.values()} == {JobState.SUCCEEDED}
    calls = emulator.key_stats()["calls"]["ListTasksDetails"]["ok"]
    per_job = calls / len(ids)
    print(f"\n200 jobs, at most {max(seen)} in flight at once: {calls} ListTasksDetails calls, "
          f"{per_job:.3f} per completed job")
    assert max(seen) >= 100  # they really were in flight together
    assert per_job <= 0.2
    assert max(r.attempts for r in records.values()) == 1


def test_a_task_still_pending_at_the_deadline_fails_with_the_reason(
        redis_url: str, emulator: EmulatorProcess, tmp_path: Path) -> None:
    emulator.configure(run_s=120.0)
    with pipeline_running(redis_url, emulator, tmp_path, count=1, concurrency=2,
                          poll_interval_s=0.3, poll_deadline_s=2) as pipeline:
        files = write_pngs(pipeline.inputs, 3)
        ids = api.enqueue_many([str(p) for p in files], settings=pipeline.settings)
        records = api.wait(ids, timeout_s=60, settings=pipeline.settings)
    for record in records.values():
        assert record.state is JobState.FAILED
        assert (record.error_stage, record.error_code) == ("poll", "deadline")
        assert record.error_message is not None
        assert "after the poll deadline of 2 s" in record.error_message
        assert record.task_uid is not None and record.task_uid in record.error_message
    # Pending tasks were asked about again and again, but with backoff, not every 0.3 s.
    assert 1 < max(r.polls for r in records.values()) < 2 / 0.3


def test_a_task_the_api_reports_as_failed_fails_the_job_at_the_poll_stage(
        redis_url: str, emulator: EmulatorProcess, tmp_path: Path) -> None:
    emulator.configure(faults={"task_error": 1.0})
    with pipeline_running(redis_url, emulator, tmp_path, count=1, concurrency=2,
                          poll_interval_s=0.3) as pipeline:
        (path,) = write_pngs(pipeline.inputs, 1)
        job_id = api.enqueue(str(path), settings=pipeline.settings)
        record = api.wait([job_id], timeout_s=60, settings=pipeline.settings)[job_id]
    assert record.state is JobState.FAILED and record.error_stage == "poll"
    assert record.error_code is not None and record.error_code.startswith("task_error")
    assert record.error_message and str(record.task_uid) in record.error_message


def test_a_poll_loop_that_died_is_started_again_by_the_workers_watch(
        redis_url: str, emulator: EmulatorProcess, tmp_path: Path) -> None:
    with pipeline_running(redis_url, emulator, tmp_path, count=1, concurrency=2,
                          poll_interval_s=0.3, poll_max_interval_s=1) as pipeline:
        client = redis.Redis.from_url(redis_url, decode_responses=True)
        _wait_for(lambda: client.get(TICK_KEY) is None)  # no job, so no poll loop runs
        # A job that was submitted and recorded, but whose persist never reached the loop
        # (as when the loop dies for good): nothing but the workers' watch can poll it now.
        answer = emulator.call("RemoveBackground", {"RawImage": image_data_uri()}).json()
        ledger = Ledger.from_url(redis_url)
        ledger.create("orphan-1", str(tmp_path / "in" / "orphan.png"), {})
        ledger.transition("orphan-1", [JobState.ACCEPTED], JobState.SUBMITTED,
                          fields={"task_uid": answer["TaskUID"], "submitted_at": "__now__"},
                          poll_in_s=0.1)
        record = api.wait(["orphan-1"], timeout_s=60, settings=pipeline.settings)["orphan-1"]
    assert record.state is JobState.SUCCEEDED
    assert Path(record.result_paths[0]).name == "orphan.png"


def _wait_for(condition: Callable[[], bool], timeout_s: float = 30) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        assert time.monotonic() < deadline, "condition not met in time"
        time.sleep(0.05)
