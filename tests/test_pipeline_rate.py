"""The global rate limit with many worker processes: the local API server enforces L calls
per second per PublicKey. These tests assert what holds however loaded the machine is (each job
paid exactly once, throttled calls a rare exception, the limiter slowing everyone after a
throttle); the achieved rate and the busiest second are figures for `python -m bench ratelimit`,
printed here but never asserted (a process descheduled between its start and its send can
always arrive late)."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import redis

from producers import api
from tasks.store.records import JobState
from tests.support.emulator_server import EmulatorProcess, emulator, emulator_process
from tests.support.redis_server import RedisServer
from tests.support.workers import Pipeline, module_pipeline, write_pngs

__all__ = ["emulator", "emulator_process"]

L = 10  # calls per second: 300 jobs take about half a minute


@pytest.fixture(scope="module")
def pipeline(redis_server: RedisServer, emulator_process: EmulatorProcess,
             tmp_path_factory: pytest.TempPathFactory) -> Iterator[Pipeline]:
    """Four workers of concurrency four, all limited to L calls/s through one Redis."""
    yield from module_pipeline(redis_server, emulator_process, tmp_path_factory.mktemp("rate"),
                               count=4, concurrency=4, rate_limit=L, poll_interval_s=3,
                               poll_max_interval_s=8, throttle_recovery_s=8)


def _throttled(stats: dict[str, Any]) -> int:
    return sum(outcomes.get("throttled", 0) for outcomes in stats["calls"].values())


def _all_calls(stats: dict[str, Any]) -> int:
    return sum(sum(outcomes.values()) for outcomes in stats["calls"].values())


def _paid_once_each(submits: list[dict[str, Any]], ids: list[str]) -> bool:
    paid = [c["request_uuid"] for c in submits if c["outcome"] == "ok"]
    return sorted(paid) == sorted(ids)


def _submit_rate(calls: list[dict[str, Any]]) -> float:
    times = sorted(c["t"] for c in calls)
    return (len(times) - 1) / (times[-1] - times[0])


def test_sixteen_processes_pay_each_job_once_and_are_almost_never_throttled(
        pipeline: Pipeline, emulator: EmulatorProcess) -> None:
    emulator.configure(rate_limit=L)
    files = write_pngs(pipeline.inputs / "rate", 300, prefix="r")
    ids = api.enqueue_many([str(p) for p in files], batch="rate", settings=pipeline.settings)
    records = api.wait(ids, timeout_s=150, settings=pipeline.settings)

    assert {r.state for r in records.values()} == {JobState.SUCCEEDED}
    stats = emulator.key_stats()
    throttled = _throttled(stats)
    submits = emulator.calls(action="RemoveBackground")
    rate = _submit_rate(submits)
    polls = stats["calls"]["ListTasksDetails"]["ok"]
    print(f"\nL={L}/s: achieved submit rate {rate:.2f}/s ({rate / L:.1%} of L), "
          f"{polls} ListTasksDetails calls, busiest window {stats['max_calls_in_window']}, "
          f"{throttled} throttled")
    assert _paid_once_each(submits, ids)
    # Zero is the aim (the benchmark shows it); a machine under load may see a stray one.
    assert throttled < 0.01 * _all_calls(stats), stats


def test_a_backlog_logs_one_info_line_per_job_and_no_warning_for_waiting(
        pipeline: Pipeline, emulator: EmulatorProcess) -> None:
    emulator.configure(rate_limit=L)
    before = [len(w.log_text()) for w in pipeline.workers]
    files = write_pngs(pipeline.inputs / "quiet", 40, prefix="q")
    ids = api.enqueue_many([str(p) for p in files], batch="quiet", settings=pipeline.settings)
    records = api.wait(ids, timeout_s=120, settings=pipeline.settings)

    assert {r.state for r in records.values()} == {JobState.SUCCEEDED}
    logs = "".join(w.log_text()[start:] for w, start in zip(pipeline.workers, before,
                                                             strict=True))
    # Sixteen processes and a backlog: most messages waited for a token, some many times.
    print(f"\n{logs.count('] received')} deliveries for {len(ids)} jobs")
    assert "WARNING" not in logs and "Traceback" not in logs, logs[-3000:]
    assert "waits for an API token" not in logs  # normal waiting: DEBUG at most
    for job_id in ids:
        assert len(re.findall(rf"INFO.*job {job_id} succeeded", logs)) == 1, job_id


def test_when_the_api_allows_less_than_configured_the_limiter_adapts_and_all_succeed(
        pipeline: Pipeline, emulator: EmulatorProcess, tmp_path: Path) -> None:
    emulator.configure(rate_limit=L // 2)
    files = write_pngs(pipeline.inputs / "adapt", 60, prefix="a")
    ids = api.enqueue_many([str(p) for p in files], batch="adapt", settings=pipeline.settings)
    records = api.wait(ids, timeout_s=150, settings=pipeline.settings)

    assert {r.state for r in records.values()} == {JobState.SUCCEEDED}, [
        (r.error_code, r.error_message) for r in records.values() if r.state != "SUCCEEDED"][:3]
    stats = emulator.key_stats()
    throttled = _throttled(stats)
    assert throttled > 0  # the API did push back...
    client = redis.Redis.from_url(pipeline.settings.redis_url, decode_responses=True)
    factor = client.hget(f"cutout:limiter:{pipeline.settings.public_key}", "factor")
    assert factor is not None and float(factor) < 1.0  # ...and everyone slowed down
    assert _paid_once_each(emulator.calls(action="RemoveBackground"), ids)
    rate = _submit_rate(emulator.calls(action="RemoveBackground", outcome="ok"))
    print(f"\nAPI limit {L // 2}/s, configured {L}/s: {throttled} throttled answers, "
          f"achieved {rate:.2f}/s")
