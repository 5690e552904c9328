"""Cost controls end to end: the same cutout is paid for once (real Redis, real workers, the
local API server counting the calls it was paid for)."""

from __future__ import annotations

import shutil
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest

from producers import api
from tasks.store.ledger import Ledger
from tasks.store.records import JobRecord
from tests.support.emulator_server import EmulatorProcess, emulator, emulator_process
from tests.support.redis_server import RedisServer
from tests.support.workers import Pipeline, module_pipeline, write_pngs

__all__ = ["emulator", "emulator_process"]  # fixtures used here, imported for pytest

N = 20


@pytest.fixture(scope="module")
def pipeline(redis_server: RedisServer, emulator_process: EmulatorProcess,
             tmp_path_factory: pytest.TempPathFactory) -> Iterator[Pipeline]:
    """Two workers (concurrency 2 each) for the whole module."""
    yield from module_pipeline(redis_server, emulator_process, tmp_path_factory.mktemp("costs"),
                               count=2, concurrency=2)


def _copies(files: list[Path], folder: Path, prefix: str) -> list[str]:
    """The same images under other names."""
    folder.mkdir(parents=True, exist_ok=True)
    copies = [folder / f"{prefix}{i:04d}.png" for i in range(len(files))]
    for source, copy in zip(files, copies, strict=True):
        shutil.copyfile(source, copy)
    return [str(c) for c in copies]


def _paid(emulator: EmulatorProcess, ids: list[str]) -> int:
    paid = emulator.paid_by_job()
    return sum(paid[job_id] for job_id in ids)


def _all_in_place(records: dict[str, JobRecord]) -> None:
    for record in records.values():
        assert str(record.state) == "SUCCEEDED", record
        (path,) = record.result_paths
        assert Path(path).name == Path(record.reference).stem + ".png"
        assert Path(path).stat().st_size > 0


def test_the_same_images_under_other_names_are_paid_for_once(
        pipeline: Pipeline, emulator: EmulatorProcess) -> None:
    s = pipeline.settings
    files = write_pngs(pipeline.inputs / "first", N, prefix="first")
    first = api.enqueue_many([str(p) for p in files], batch="first", settings=s)
    _all_in_place(api.wait(first, timeout_s=120, settings=s))
    again = _copies(files, pipeline.inputs / "again", "again")
    second = api.enqueue_many(again, batch="again", settings=s)
    records = api.wait(second, timeout_s=120, settings=s)

    _all_in_place(records)
    assert _paid(emulator, first + second) == N
    assert {r.reused_from for r in records.values()} == set(first)
    assert api.batch_counts("again", settings=s) == {"SUCCEEDED": N}
    events = [e for e in Ledger.from_url(s.redis_url).events(100_000)
              if e["type"] == "job.succeeded" and e["job_id"] in set(second)]
    assert len(events) == N and {e["reused_from"] for e in events} == set(first)


def test_forced_jobs_pay_even_for_a_cutout_made_before(
        pipeline: Pipeline, emulator: EmulatorProcess) -> None:
    s = pipeline.settings
    files = write_pngs(pipeline.inputs / "plain", N, prefix="plain")
    plain = api.enqueue_many([str(p) for p in files], batch="plain", settings=s)
    _all_in_place(api.wait(plain, timeout_s=120, settings=s))
    forced = api.enqueue_many(_copies(files, pipeline.inputs / "forced", "forced"),
                              batch="forced", settings=s, force=True)
    records = api.wait(forced, timeout_s=120, settings=s)

    _all_in_place(records)
    assert _paid(emulator, plain + forced) == 2 * N
    assert not any(r.reused_from for r in records.values())


def test_two_batches_of_the_same_images_enqueued_at_once_pay_once(
        pipeline: Pipeline, emulator: EmulatorProcess) -> None:
    s = pipeline.settings
    files = write_pngs(pipeline.inputs / "left", N, prefix="left")
    left = api.enqueue_many([str(p) for p in files], batch="left", settings=s)
    right = api.enqueue_many(_copies(files, pipeline.inputs / "right", "right"),
                             batch="right", settings=s)
    records = api.wait(left + right, timeout_s=180, settings=s)

    _all_in_place(records)
    assert _paid(emulator, left + right) == N
    reused = Counter(bool(r.reused_from) for r in records.values())
    assert reused == {True: N, False: N}


def test_other_options_make_another_cutout(
        pipeline: Pipeline, emulator: EmulatorProcess) -> None:
    s = pipeline.settings
    files = [str(p) for p in write_pngs(pipeline.inputs / "opts", 3, prefix="opts")]
    plain = api.enqueue_many(files, batch="opts", settings=s)
    _all_in_place(api.wait(plain, timeout_s=60, settings=s))
    eroded = api.enqueue_many(files, batch="opts-eroded", settings=s, ErodeSize=5)
    records = api.wait(eroded, timeout_s=60, settings=s)

    assert _paid(emulator, plain + eroded) == 6
    assert not any(r.reused_from for r in records.values())
