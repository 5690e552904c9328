"""Crashes at every awkward moment: whole workers and Redis killed with SIGKILL, a worker
process killed at each failpoint, every worker stopped mid-run by a deploy, a Redis blip while
calls are in flight. Each time: every job ends SUCCEEDED or flagged NEEDS_RECONCILIATION,
none is lost, and none is paid twice outside the flagged ones.

The waits below are liveness bounds (far above what recovery takes; the test prints the real
figure), never a measure of speed."""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path

import pytest
import redis

from producers import api
from tasks.store.records import JobRecord, JobState
from tests.support.emulator_server import EmulatorProcess, emulator, emulator_process
from tests.support.redis_server import RedisServer
from tests.support.workers import (
    pipeline_overrides,
    pipeline_running,
    pipeline_settings,
    running_workers,
    settings_env,
    write_pngs,
)

__all__ = ["emulator", "emulator_process"]

# Short leases so that a dead worker's claims lapse within a test.
FAST = {"lease_s": 3, "poll_interval_s": 0.3, "poll_max_interval_s": 2, "rate_limit": 20}


def _until(condition: Callable[[], bool], timeout_s: float = 60) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        assert time.monotonic() < deadline, "the run never reached the moment to strike"
        time.sleep(0.05)


def _check_paid_once(records: dict[str, JobRecord], emulator: EmulatorProcess) -> set[str]:
    """Every job terminal; a SUCCEEDED one paid exactly once; none paid twice; return the
    flagged ones (the only jobs that may have been paid without a TaskUID on record)."""
    states = Counter(str(r.state) for r in records.values())
    assert set(states) <= {"SUCCEEDED", "NEEDS_RECONCILIATION"}, states
    paid = emulator.paid_by_job()
    flagged = {j for j, r in records.items() if r.state is JobState.NEEDS_RECONCILIATION}
    assert all(paid[j] == 1 for j in records if j not in flagged)
    assert all(paid[j] <= 1 for j in flagged)
    assert sum(paid[j] for j in records) <= len(records)
    return flagged


def _broker(request: pytest.FixtureRequest, broker: str, redis_url: str) -> str:
    url: str = redis_url if broker == "redis" else request.getfixturevalue("rabbitmq_url")
    return url


@pytest.mark.parametrize("broker", ["redis", "rabbitmq"])
def test_one_of_three_workers_killed_loses_no_job_and_pays_none_twice(
        broker: str, request: pytest.FixtureRequest, redis_url: str,
        emulator: EmulatorProcess, tmp_path: Path) -> None:
    emulator.configure(queue_s=0.5, run_s=1.0, faults={"slow_rate": 0.3, "slow_s": 1.0})
    with pipeline_running(redis_url, emulator, tmp_path, count=3, concurrency=4,
                          broker_url=_broker(request, broker, redis_url), **FAST) as pipeline:
        files = write_pngs(pipeline.inputs, 40)
        ids = api.enqueue_many([str(p) for p in files], settings=pipeline.settings)
        _until(lambda: len(emulator.calls(action="RemoveBackground")) >= 10)
        pipeline.workers[0].kill()
        killed = time.monotonic()
        records = api.wait(ids, timeout_s=90, settings=pipeline.settings)
        took = time.monotonic() - killed
    assert all(r.terminal for r in records.values())
    flagged = _check_paid_once(records, emulator)
    print(f"\n{broker}: 1 of 3 workers killed: {len(records)} jobs, 0 lost, {len(flagged)} "
          f"flagged; all terminal {took:.0f} s after the kill")


@pytest.mark.parametrize("broker", ["redis", "rabbitmq"])
def test_killed_workers_then_a_redis_crash_lose_no_job_and_pay_none_twice(
        broker: str, request: pytest.FixtureRequest, emulator: EmulatorProcess,
        tmp_path: Path) -> None:
    emulator.configure(queue_s=0.5, run_s=1.0, faults={"slow_rate": 0.3, "slow_s": 1.0})
    server = RedisServer(directory=tmp_path, appendfsync="always")
    server.start()
    try:
        with pipeline_running(server.url, emulator, tmp_path, count=3, concurrency=4,
                              broker_url=_broker(request, broker, server.url),
                              **FAST) as pipeline:
            files = write_pngs(pipeline.inputs, 60)
            ids = api.enqueue_many([str(p) for p in files], settings=pipeline.settings)
            _until(lambda: len(emulator.calls(action="RemoveBackground")) >= 15)
            for worker in pipeline.workers:
                worker.kill()
            server.restart()  # SIGKILL, then the same port and AOF
            last_fault = time.monotonic()
            env = settings_env(pipeline.overrides)
            with running_workers(env, tmp_path / "after", count=2, concurrency=4):
                records = api.wait(ids, timeout_s=150, settings=pipeline.settings)
            took = time.monotonic() - last_fault
    finally:
        server.kill()
    assert all(r.terminal for r in records.values()), Counter(str(r.state)
                                                              for r in records.values())
    flagged = _check_paid_once(records, emulator)
    print(f"\n{broker}: 3 workers and Redis killed: {len(records)} jobs, 0 lost, "
          f"{len(flagged)} flagged, "
          f"{sum(emulator.paid_by_job().values())} paid; all terminal {took:.0f} s after "
          "the last fault")


@pytest.mark.parametrize(("point", "flagged", "paid"), [
    ("after_claim", 0, 1),  # nothing was sent: the job is claimed again once the lease lapses
    ("after_call_started", 0, 1),  # the start is on record, never marked sent: claimed again
    ("after_sent_mark", 1, 0),  # marked sent, killed just before it left: flagged, never paid
    ("before_task_uid_write", 1, 1),  # paid, the answer lost with the process: flagged
    ("after_task_uid_write", 0, 1),  # the TaskUID is on record: the next delivery persists it
    ("before_ack", 0, 1),  # all done but the ack: the next delivery changes nothing
])
def test_a_process_killed_at_a_failpoint_loses_no_job_and_pays_none_twice(
        point: str, flagged: int, paid: int, redis_url: str, emulator: EmulatorProcess,
        tmp_path: Path) -> None:
    with pipeline_running(redis_url, emulator, tmp_path, count=1, concurrency=2,
                          failpoint=f"{point}:1", **FAST) as pipeline:
        files = write_pngs(pipeline.inputs, 4)
        ids = api.enqueue_many([str(p) for p in files], settings=pipeline.settings)
        records = api.wait(ids, timeout_s=90, settings=pipeline.settings)
        hits = redis.Redis.from_url(redis_url).get(f"cutout:failpoint:{point}")
    assert int(hits or 0) >= 1  # a process really died there
    found = _check_paid_once(records, emulator)
    assert len(found) == flagged
    assert all(emulator.paid_by_job()[j] == paid for j in found)
    if point == "after_sent_mark":
        (job,) = found
        assert records[job].error_code == "unknown_outcome"


def test_a_deploy_that_stops_every_worker_mid_call_flags_none_and_pays_each_once(
        redis_url: str, emulator: EmulatorProcess, tmp_path: Path) -> None:
    # Half the answers take 3 s: longer than the 1 s soft shutdown the workers get.
    emulator.configure(faults={"slow_rate": 0.5, "slow_s": 3.0})
    values = pipeline_overrides(redis_url, emulator.base_url, emulator.public_key,
                                emulator.private_key, tmp_path, soft_shutdown_timeout_s=1,
                                **FAST)
    env = {**settings_env(values), "REMAP_SIGTERM": "SIGQUIT"}  # as in a container
    settings = pipeline_settings(values)
    (tmp_path / "in").mkdir()
    ids = api.enqueue_many([str(p) for p in write_pngs(tmp_path / "in", 60)],
                           settings=settings)
    with running_workers(env, tmp_path, count=2, concurrency=4) as old:
        _until(lambda: emulator.key_stats().get("slow_answers", 0) >= 4)
        for worker in old:
            worker.terminate_main()  # what `docker stop` sends
        for worker in old:
            assert worker.wait_stopped(60)
    with running_workers(env, tmp_path / "new", count=2, concurrency=4):
        records = api.wait(ids, timeout_s=120, settings=settings)
    assert {r.state for r in records.values()} == {JobState.SUCCEEDED}
    assert emulator.paid_by_job() == dict.fromkeys(ids, 1)


def test_a_redis_blip_while_calls_are_in_flight_neither_cuts_nor_flags_them(
        emulator: EmulatorProcess, tmp_path: Path) -> None:
    emulator.configure(faults={"slow_rate": 1.0, "slow_s": 3.0})
    server = RedisServer(directory=tmp_path, appendfsync="always")
    server.start()
    try:
        with pipeline_running(server.url, emulator, tmp_path, count=1, concurrency=4,
                              **FAST) as pipeline:
            files = write_pngs(pipeline.inputs, 4)
            ids = api.enqueue_many([str(p) for p in files], settings=pipeline.settings)
            _until(lambda: len(emulator.calls(action="RemoveBackground")) == 4)
            server.restart()  # the broker (and the ledger) gone while every call is open
            records = api.wait(ids, timeout_s=90, settings=pipeline.settings)
    finally:
        server.kill()
    assert {r.state for r in records.values()} == {JobState.SUCCEEDED}
    assert emulator.paid_by_job() == dict.fromkeys(ids, 1)

