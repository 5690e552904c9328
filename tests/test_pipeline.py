"""The pipeline end to end: real Redis, real `celery -A tasks worker` processes, the real
local API server over HTTP, images from files and from http URLs on loopback."""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis
from PIL import Image

from picpik.errors import InvalidInput
from producers import api
from producers.api import _producer_app, publish
from tasks.store.ledger import Ledger
from tasks.store.records import JobState
from tests.support.emulator_server import EmulatorProcess, emulator, emulator_process
from tests.support.redis_server import RedisServer
from tests.support.workers import ImageServer, Pipeline, module_pipeline, write_pngs

__all__ = ["emulator", "emulator_process"]  # fixtures used here, imported for pytest


@pytest.fixture(scope="module")
def pipeline(redis_server: RedisServer, emulator_process: EmulatorProcess,
             tmp_path_factory: pytest.TempPathFactory) -> Iterator[Pipeline]:
    """Two workers (concurrency 2 each) for the whole module; loopback URLs allowed."""
    yield from module_pipeline(redis_server, emulator_process,
                               tmp_path_factory.mktemp("pipeline"), count=2, concurrency=2,
                               fetch_allow="127.0.0.1")


@pytest.fixture
def ledger(pipeline: Pipeline) -> Ledger:
    return Ledger.from_url(pipeline.settings.redis_url)


def _events(ledger: Ledger, kind: str, job_ids: set[str]) -> list[dict[str, str]]:
    return [e for e in ledger.events(100_000) if e["type"] == kind and e["job_id"] in job_ids]


def test_two_hundred_jobs_from_files_and_urls_all_succeed_each_paid_once(
        pipeline: Pipeline, emulator: EmulatorProcess, ledger: Ledger) -> None:
    files = write_pngs(pipeline.inputs / "e2e", 100, prefix="file")
    served = write_pngs(pipeline.root / "served", 100, prefix="url")
    with ImageServer(pipeline.root / "served") as server:
        refs = [str(p) for p in files] + [f"{server.url}/{p.name}" for p in served]
        ids = api.enqueue_many(refs, batch="e2e", settings=pipeline.settings)
        records = api.wait(ids, timeout_s=120, settings=pipeline.settings)

    states = Counter(str(r.state) for r in records.values())
    assert states == {"SUCCEEDED": 200}, [r for r in records.values() if r.state != "SUCCEEDED"][:3]
    assert api.batch_counts("e2e", settings=pipeline.settings) == {"SUCCEEDED": 200}
    for record in records.values():
        (path,) = record.result_paths
        assert Path(path).name == Path(record.reference).stem + ".png"
        with Image.open(path) as image:
            assert (image.format, image.mode, image.size) == ("PNG", "RGBA", (64, 48))
    uids = [str(r.task_uid) for r in records.values() if r.task_uid]
    assert len(set(uids)) == 200
    submitted = _events(ledger, "job.submitted", set(ids))
    assert sorted(e["task_uid"] for e in submitted) == sorted(uids)  # exactly once each
    assert len(_events(ledger, "job.succeeded", set(ids))) == 200
    paid = Counter(c["request_uuid"] for c in emulator.calls(action="RemoveBackground"))
    assert set(paid) == set(ids) and set(paid.values()) == {1}
    polls = emulator.key_stats()["calls"].get("ListTasksDetails", {}).get("ok", 0)
    print(f"\nListTasksDetails calls per completed job: {polls / 200:.3f} ({polls} calls)")


def test_duplicate_messages_for_the_same_jobs_lead_to_one_api_call_each(
        pipeline: Pipeline, emulator: EmulatorProcess, ledger: Ledger) -> None:
    files = write_pngs(pipeline.inputs / "dup", 20, prefix="dup")
    ids = api.enqueue_many([str(p) for p in files], batch="dup", settings=pipeline.settings)
    jobs = list(zip(ids, [str(p) for p in files], strict=True))
    publish(pipeline.settings, jobs)  # the same messages again, twice, on purpose
    publish(pipeline.settings, jobs)
    records = api.wait(ids, timeout_s=60, settings=pipeline.settings)
    assert {r.state for r in records.values()} == {JobState.SUCCEEDED}
    paid = Counter(c["request_uuid"] for c in emulator.calls(action="RemoveBackground"))
    assert {job_id: paid[job_id] for job_id in ids} == dict.fromkeys(ids, 1)
    assert len(_events(ledger, "job.submitted", set(ids))) == 20
    assert len(_events(ledger, "job.succeeded", set(ids))) == 20
    assert all(len(r.result_paths) == 1 for r in records.values())


def test_a_producer_repeating_enqueue_with_its_idempotency_key_pays_once_per_job(
        pipeline: Pipeline, emulator: EmulatorProcess) -> None:
    s = pipeline.settings
    refs = [str(p) for p in write_pngs(pipeline.inputs / "idem", 10, prefix="idem")]
    ids = api.enqueue_many(refs, batch="idem", idempotency_key="import-9", settings=s)
    # The producer saw an error (a timeout, say) and sends the same request again, twice:
    # once while the jobs run, once after they finished.
    assert api.enqueue_many(refs, batch="idem", idempotency_key="import-9", settings=s) == ids
    records = api.wait(ids, timeout_s=60, settings=s)
    assert api.enqueue_many(refs, batch="idem", idempotency_key="import-9", settings=s) == ids
    own = api.enqueue_many(refs[:2], batch="idem", job_ids=ids[:2], settings=s)
    assert own == ids[:2]
    assert {r.state for r in records.values()} == {JobState.SUCCEEDED}
    paid = Counter(c["request_uuid"] for c in emulator.calls(action="RemoveBackground"))
    assert paid == dict.fromkeys(ids, 1)
    assert api.batch_counts("idem", settings=s) == {"SUCCEEDED": 10}


def test_bad_inputs_fail_with_stage_field_and_reason_and_the_worker_keeps_working(
        pipeline: Pipeline, emulator: EmulatorProcess, tmp_path: Path) -> None:
    (good,) = write_pngs(pipeline.inputs / "bad", 1, prefix="good")
    (pipeline.inputs / "bad" / "notes.png").write_text("not an image at all")
    outside = write_pngs(tmp_path, 1, prefix="outside")[0]
    s = pipeline.settings
    cases = {
        api.enqueue(str(pipeline.inputs / "bad" / "missing.png"), batch="bad", settings=s):
            ("fetch", "reference", "no such file"),
        api.enqueue(str(outside), batch="bad", settings=s):
            ("fetch", "reference", "outside the files root"),
        api.enqueue(str(pipeline.inputs / "bad" / "notes.png"), batch="bad", settings=s):
            ("fetch", "reference", "not an image"),
        api.enqueue("http://169.254.169.254/latest/photo.png", batch="bad", settings=s):
            ("fetch", "reference", "not a public address"),
        api.enqueue(str(good), batch="bad", settings=s, Box=[0, 0, 100, 100]):
            ("fetch", "Box", "outside the 64x48 image"),
    }
    records = api.wait(list(cases), timeout_s=60, settings=s)
    for job_id, (stage, field, reason) in cases.items():
        record = records[job_id]
        assert record.state is JobState.FAILED
        assert (record.error_stage, record.error_field) == (stage, field)
        assert record.error_message is not None and reason in record.error_message
    assert all(w.alive() for w in pipeline.workers)
    after = api.enqueue(str(good), batch="bad", settings=s, OnlyMask=True)
    final = api.wait([after], timeout_s=30, settings=s)[after]
    assert final.state is JobState.SUCCEEDED
    assert Path(final.result_paths[0]).name == "good0000.mask.png"
    paid = {c["request_uuid"] for c in emulator.calls(action="RemoveBackground")}
    assert paid == {after}
    assert api.batch_counts("bad", settings=s) == {"FAILED": 5, "SUCCEEDED": 1}


def test_invalid_options_are_refused_before_anything_is_queued(pipeline: Pipeline) -> None:
    with pytest.raises(InvalidInput) as info:
        api.enqueue_many(["a.png", "b.png"], batch="refused", settings=pipeline.settings,
                         ErodeSize=99)
    assert info.value.field == "ErodeSize"
    assert api.batch_jobs("refused", settings=pipeline.settings) == []


def test_a_service_sending_by_task_name_gets_its_job_done(pipeline: Pipeline) -> None:
    (path,) = write_pngs(pipeline.inputs / "byname", 1, prefix="named")
    app = _producer_app(pipeline.settings)
    result = app.send_task("cutout.submit", task_id="named-job-1", kwargs={
        "reference": str(path), "options": {"OnlyMask": True}, "batch": "byname"})
    deadline = time.monotonic() + 30
    while api.get_job(result.id, settings=pipeline.settings) is None:  # the worker records it
        assert time.monotonic() < deadline
        time.sleep(0.1)
    record = api.wait([result.id], timeout_s=30, settings=pipeline.settings)[result.id]
    assert record.state is JobState.SUCCEEDED and record.options == {"OnlyMask": True}
    assert Path(record.result_paths[0]).name == "named0000.mask.png"
    assert api.batch_counts("byname", settings=pipeline.settings) == {"SUCCEEDED": 1}


def test_failed_jobs_of_a_batch_can_be_retried_under_the_same_ids(pipeline: Pipeline) -> None:
    s = pipeline.settings
    target = pipeline.inputs / "retry" / "late0000.png"
    job_id = api.enqueue(str(target), batch="retry", settings=s)
    assert api.wait([job_id], timeout_s=30, settings=s)[job_id].state is JobState.FAILED
    write_pngs(target.parent, 1, prefix="late")
    assert api.retry_failed("retry", settings=s) == [job_id]
    record = api.wait([job_id], timeout_s=30, settings=s)[job_id]
    assert record.state is JobState.SUCCEEDED and record.error_message is None
    assert record.attempts == 2


def test_the_private_key_is_nowhere_in_redis_nor_in_the_worker_logs(pipeline: Pipeline) -> None:
    s = pipeline.settings
    files = write_pngs(pipeline.inputs / "secret", 3, prefix="s")
    ids = api.enqueue_many([str(p) for p in files], batch="secret", settings=s)
    bad = api.enqueue(str(pipeline.inputs / "secret" / "missing.png"), batch="secret", settings=s)
    records = api.wait([*ids, bad], timeout_s=60, settings=s)
    assert Counter(r.state for r in records.values()) == {JobState.SUCCEEDED: 3,
                                                         JobState.FAILED: 1}
    secret = s.private_key_value()
    client = redis.Redis.from_url(s.redis_url)
    for key in client.scan_iter(count=1000):
        assert secret.encode() not in _dump(client, key), key
    full_logs = "\n".join(w.log_text() for w in pipeline.workers)
    assert "succeeded" in full_logs.lower() or "received" in full_logs.lower()
    assert secret not in full_logs


def _dump(client: redis.Redis, key: bytes) -> bytes:
    """Every byte a key holds, whatever its type (messages, ledger, events, results)."""
    kind = client.type(key)
    if kind == b"string":
        return client.get(key) or b""
    if kind == b"hash":
        return repr(client.hgetall(key)).encode()
    if kind == b"list":
        return repr(client.lrange(key, 0, -1)).encode()
    if kind == b"set":
        return repr(client.smembers(key)).encode()
    if kind == b"zset":
        return repr(client.zrange(key, 0, -1)).encode()
    if kind == b"stream":
        return repr(client.xrange(key)).encode()
    return b""
