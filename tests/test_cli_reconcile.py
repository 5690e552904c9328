"""`cutout reconcile`, run as users run it (the installed entry point in a subprocess) against the
suite's Redis, a real worker and the real local API server. A job is left NEEDS_RECONCILIATION
the real way: the server takes (and bills) the call, then drops the connection unanswered."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from PIL import Image

from producers import api
from tasks.store.ledger import Ledger
from tasks.store.records import JobState
from tests.support.emulator_server import EmulatorProcess, emulator, emulator_process
from tests.support.redis_server import RedisServer
from tests.support.workers import Pipeline, module_pipeline, settings_env, write_pngs

__all__ = ["emulator", "emulator_process"]  # fixtures used here, imported for pytest

CUTOUT = Path(sys.executable).parent / "cutout"


@pytest.fixture(scope="module")
def pipeline(redis_server: RedisServer, emulator_process: EmulatorProcess,
             tmp_path_factory: pytest.TempPathFactory) -> Iterator[Pipeline]:
    yield from module_pipeline(redis_server, emulator_process,
                               tmp_path_factory.mktemp("reconcile"), count=1, concurrency=2)


def cutout(pipeline: Pipeline, *args: str, **overrides: str) -> subprocess.CompletedProcess[str]:
    env = settings_env({**pipeline.overrides, **overrides})
    return subprocess.run([str(CUTOUT), *args], capture_output=True, text=True, env=env,
                          stdin=subprocess.DEVNULL, timeout=120, check=False)


def flagged_job(pipeline: Pipeline, emulator: EmulatorProcess, name: str,
                run_s: float) -> tuple[str, str]:
    """A job whose call the server took, then dropped unanswered; (job id, its TaskUID)."""
    emulator.configure(queue_s=0, run_s=run_s, faults={"drop_after": 1.0})
    (path,) = write_pngs(pipeline.inputs / name, 1, prefix=name)
    job_id = api.enqueue(str(path), batch=name, settings=pipeline.settings)
    record = api.wait([job_id], timeout_s=60, settings=pipeline.settings)[job_id]
    emulator.configure(faults={"drop_after": 0.0})
    assert record.state is JobState.NEEDS_RECONCILIATION, record
    (call,) = emulator.calls(action="RemoveBackground")
    assert call["request_uuid"] == job_id and call["outcome"] == "fault_drop_after"
    return job_id, call["task_uid"]


def test_the_list_shows_each_flagged_job_and_the_apis_unrecorded_running_tasks(
        pipeline: Pipeline, emulator: EmulatorProcess) -> None:
    job_id, task_uid = flagged_job(pipeline, emulator, "listed", run_s=600)

    shown = cutout(pipeline, "reconcile", "--batch", "listed")
    as_json = cutout(pipeline, "reconcile", "--json")

    assert shown.returncode == 0, shown.stderr
    assert "1 job(s) in batch listed need reconciliation" in shown.stdout
    assert job_id in shown.stdout and "listed0000.png" in shown.stdout
    assert f"{task_uid}  Running" in shown.stdout
    data = json.loads(as_json.stdout)
    assert [job["job_id"] for job in data["jobs"]] == [job_id]
    assert data["api"]["running"] == [task_uid]
    assert [d["task_uid"] for d in data["api"]["unrecorded"]] == [task_uid]


def test_attaching_the_task_found_on_the_api_side_ends_succeeded_with_the_cutout(
        pipeline: Pipeline, emulator: EmulatorProcess) -> None:
    job_id, task_uid = flagged_job(pipeline, emulator, "attached", run_s=0.1)

    result = cutout(pipeline, "reconcile", "--attach", job_id, task_uid)

    assert result.returncode == 0, result.stderr
    assert f"SUBMITTED with TaskUID {task_uid}" in result.stdout
    record = api.wait([job_id], timeout_s=60, settings=pipeline.settings)[job_id]
    assert record.state is JobState.SUCCEEDED and record.task_uid == task_uid
    (path,) = record.result_paths
    assert Path(path).name == "attached0000.png"
    with Image.open(path) as cut:
        assert (cut.mode, cut.size) == ("RGBA", (64, 48))
    assert len(emulator.calls(action="RemoveBackground")) == 1  # paid once, never again
    events = Ledger.from_url(pipeline.settings.redis_url).events(100_000)
    assert [e["task_uid"] for e in events
            if e["type"] == "job.submitted" and e["job_id"] == job_id] == [task_uid]
    again = cutout(pipeline, "reconcile", "--attach", job_id, task_uid)
    assert again.returncode == 2 and "is SUCCEEDED, not NEEDS_RECONCILIATION" in again.stderr


def test_a_task_uid_the_api_does_not_know_is_refused(pipeline: Pipeline,
                                                     emulator: EmulatorProcess) -> None:
    job_id, _ = flagged_job(pipeline, emulator, "unknown", run_s=0.1)
    result = cutout(pipeline, "reconcile", "--attach", job_id, "aaaaaaaaaaaaaaaaaaaa")
    assert result.returncode == 2
    assert "field task_uid: the API knows no task aaaaaaaaaaaaaaaaaaaa" in result.stderr
    record = api.get_job(job_id, settings=pipeline.settings)
    assert record is not None and record.state is JobState.NEEDS_RECONCILIATION


def test_resubmit_without_yes_and_without_a_terminal_is_refused(
        pipeline: Pipeline, emulator: EmulatorProcess) -> None:
    job_id, _ = flagged_job(pipeline, emulator, "unsure", run_s=0.1)
    result = cutout(pipeline, "reconcile", "--resubmit", job_id)
    assert result.returncode == 2
    assert "confirm on a terminal, or pass --yes" in result.stderr
    record = api.get_job(job_id, settings=pipeline.settings)
    assert record is not None and record.state is JobState.NEEDS_RECONCILIATION
    assert len(emulator.calls(action="RemoveBackground")) == 1


def test_resubmit_with_yes_submits_the_job_again(pipeline: Pipeline,
                                                 emulator: EmulatorProcess) -> None:
    job_id, _ = flagged_job(pipeline, emulator, "again", run_s=0.1)
    result = cutout(pipeline, "reconcile", "--resubmit", job_id, "--yes")
    assert result.returncode == 0, result.stderr
    record = api.wait([job_id], timeout_s=60, settings=pipeline.settings)[job_id]
    assert record.state is JobState.SUCCEEDED and record.error_message is None
    assert [c["request_uuid"] for c in emulator.calls(action="RemoveBackground")] == [
        job_id, job_id]  # the second call, as the user decided


def test_reconcile_without_the_private_key_is_refused_naming_the_settings(
        pipeline: Pipeline, emulator: EmulatorProcess) -> None:
    env = {k: v for k, v in pipeline.overrides.items() if k != "private_key"}
    result = subprocess.run([str(CUTOUT), "reconcile"], capture_output=True, text=True,
                            env=settings_env(env), timeout=60, check=False)
    assert result.returncode == 2
    assert "CUTOUT_PRIVATE_KEY" in result.stderr and "signed" in result.stderr
    assert emulator.key_stats()["calls"] == {}
