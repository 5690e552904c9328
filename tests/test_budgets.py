"""Credit budgets, the dry run and the confirmation, end to end: real Redis, four worker
processes racing, the local API server counting the credits it was paid, the `cutout`
command as users run it."""

from __future__ import annotations

import subprocess
import sys
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest

from producers import api
from tasks.store.ledger import Ledger
from tests.support.emulator_server import EmulatorProcess, emulator, emulator_process
from tests.support.redis_server import RedisServer
from tests.support.workers import Pipeline, module_pipeline, settings_env, write_pngs

__all__ = ["emulator", "emulator_process"]  # fixtures used here, imported for pytest

CUTOUT = Path(sys.executable).parent / "cutout"
DAILY = 10
JOBS = 30


@pytest.fixture(scope="module")
def pipeline(redis_server: RedisServer, emulator_process: EmulatorProcess,
             tmp_path_factory: pytest.TempPathFactory) -> Iterator[Pipeline]:
    """Four worker processes (two workers, concurrency 2) under a daily budget of DAILY."""
    yield from module_pipeline(redis_server, emulator_process,
                               tmp_path_factory.mktemp("budgets"), count=2, concurrency=2,
                               daily_credit_budget=DAILY)


def cutout(pipeline: Pipeline, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
    environment = {**settings_env(pipeline.overrides), **env}
    return subprocess.run([str(CUTOUT), *args], capture_output=True, text=True,
                          env=environment, stdin=subprocess.DEVNULL, timeout=120, check=False)


def test_racing_workers_never_pass_the_daily_budget_and_held_jobs_go_on_when_it_is_raised(
        pipeline: Pipeline, emulator: EmulatorProcess) -> None:
    s = pipeline.settings
    files = write_pngs(pipeline.inputs / "daily", JOBS, prefix="daily")
    ids = api.enqueue_many([str(p) for p in files], batch="daily", settings=s)
    records = api.wait(ids, timeout_s=120, settings=s)

    assert Counter(str(r.state) for r in records.values()) == {
        "SUCCEEDED": DAILY, "ON_HOLD": JOBS - DAILY}
    assert emulator.key_stats()["credits_spent"] == DAILY
    assert {r.hold_reason for r in records.values() if r.hold_reason} == {"daily"}
    assert Ledger.from_url(s.redis_url).state_counts().get("ON_HOLD") == JOBS - DAILY
    shown = cutout(pipeline, "budget")
    assert shown.returncode == 0, shown.stderr
    assert f"spent {DAILY}, reserved 0, budget {DAILY}" in shown.stdout
    assert f"ON_HOLD: {JOBS - DAILY} job(s)" in shown.stdout

    raised = cutout(pipeline, "budget", "--daily", "0")
    assert raised.returncode == 0, raised.stderr
    records = api.wait(ids, timeout_s=120, settings=s)
    assert Counter(str(r.state) for r in records.values()) == {"SUCCEEDED": JOBS}
    assert emulator.key_stats()["credits_spent"] == JOBS
    assert api.batch_counts("daily", settings=s) == {"SUCCEEDED": JOBS}


def test_a_batch_budget_holds_the_rest_of_its_batch_until_raised(
        pipeline: Pipeline, emulator: EmulatorProcess) -> None:
    assert cutout(pipeline, "budget", "--daily", "0").returncode == 0
    folder = pipeline.inputs / "capped"
    write_pngs(folder, 6, prefix="capped")
    queued = cutout(pipeline, "enqueue", str(folder), "--batch", "capped", "--budget", "2",
                    "--wait", "--timeout-s", "60")
    assert queued.returncode == 1, queued.stderr  # not every job succeeded: some are held
    assert "4 job(s) ON_HOLD" in queued.stderr
    assert api.batch_counts("capped", settings=pipeline.settings) == {
        "SUCCEEDED": 2, "ON_HOLD": 4}

    raised = cutout(pipeline, "budget", "--batch", "capped", "--credits", "6")
    assert raised.returncode == 0, raised.stderr
    assert "spent 2" in raised.stdout
    ids = [r.job_id for r in api.batch_jobs("capped", settings=pipeline.settings)]
    records = api.wait(ids, timeout_s=60, settings=pipeline.settings)
    assert Counter(str(r.state) for r in records.values()) == {"SUCCEEDED": 6}
    assert emulator.key_stats()["credits_spent"] == 6


def test_a_dry_run_counts_jobs_reuses_and_credits_and_queues_nothing(
        pipeline: Pipeline, emulator: EmulatorProcess) -> None:
    s = pipeline.settings
    folder = pipeline.inputs / "dry"
    files = write_pngs(folder, 4, prefix="dry")
    done = api.enqueue_many([str(p) for p in files[:1]], batch="dry-first", settings=s)
    assert cutout(pipeline, "budget", "--daily", "0").returncode == 0
    api.wait(done, timeout_s=60, settings=s)
    ledger = Ledger.from_url(s.redis_url)
    before = (sum(ledger.state_counts().values()), len(emulator.calls()))

    dry = cutout(pipeline, "enqueue", str(folder), "--batch", "dry", "--dry-run")
    assert dry.returncode == 0, dry.stderr
    assert "4 job(s); 1 would reuse" in dry.stdout and "3 would be paid, about 3 " in dry.stdout
    assert (sum(ledger.state_counts().values()), len(emulator.calls())) == before
    assert ledger.batch_ids("dry") == []


def test_a_large_batch_without_a_terminal_is_refused_unless_confirmed(
        pipeline: Pipeline) -> None:
    folder = pipeline.inputs / "large"
    write_pngs(folder, 3, prefix="large")
    refused = cutout(pipeline, "enqueue", str(folder), "--batch", "large",
                     CUTOUT_CONFIRM_ABOVE="2")
    assert refused.returncode == 2 and "--yes" in refused.stderr
    assert api.batch_counts("large", settings=pipeline.settings) == {}
    confirmed = cutout(pipeline, "enqueue", str(folder), "--batch", "large", "--yes",
                       CUTOUT_CONFIRM_ABOVE="2")
    assert confirmed.returncode == 0, confirmed.stderr
    assert sum(api.batch_counts("large", settings=pipeline.settings).values()) == 3
