"""Images that cannot be decoded never cost a call: the full (cheap) decode check of every
accepted format, the submit stage refusing a truncated JPEG before the call (real Redis, the
real local API server, the stage functions without Celery), and the local server answering an
image it cannot decode the way the real one would: accepted, then a task that ends `Error`."""

from __future__ import annotations

import base64
import io
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import requests
from PIL import Image

from config import Settings
from picpik.errors import InvalidInput
from tasks.inputs.images import check_decodes, inspect_image
from tasks.stages.runtime import Runtime
from tasks.stages.submit import submit_job
from tasks.store.records import JobState
from tests.support.broken_images import corrupted, photo_bytes, truncated
from tests.support.emulator_server import EmulatorProcess, emulator, emulator_process

__all__ = ["emulator", "emulator_process"]  # fixtures used here, imported for pytest

FORMATS = ["JPEG", "PNG", "WEBP", "BMP", "TIFF"]


@pytest.mark.parametrize("fmt", FORMATS)
def test_a_whole_image_of_every_accepted_format_passes_the_decode_check(fmt: str) -> None:
    data = photo_bytes(fmt)
    check_decodes(data, inspect_image(data, Settings()))


def intake(data: bytes) -> None:
    """What the submit stage runs on an image: the header check, then the decode check."""
    check_decodes(data, inspect_image(data, Settings()))


@pytest.mark.parametrize("fmt", ["JPEG", "PNG", "BMP", "TIFF"])
def test_a_truncated_image_with_an_intact_header_is_refused_by_the_decode_check(fmt: str) -> None:
    data = truncated(photo_bytes(fmt))
    info = inspect_image(data, Settings())  # the header alone is fine
    with pytest.raises(InvalidInput) as caught:
        check_decodes(data, info)
    assert caught.value.field == "reference"
    assert f"{fmt} image cannot be decoded" in caught.value.message


def test_a_truncated_webp_is_refused_already_by_its_header() -> None:
    with pytest.raises(InvalidInput, match="unreadable image"):
        intake(truncated(photo_bytes("WEBP")))


# PNG carries a checksum per chunk and JPEG's entropy coding breaks on noise; WebP, BMP and
# TIFF (uncompressed) may decode noise into noise, as any decoder would, so the API would too.
@pytest.mark.parametrize("fmt", ["JPEG", "PNG"])
def test_compressed_data_that_is_corrupt_is_refused(fmt: str) -> None:
    with pytest.raises(InvalidInput, match="cannot be decoded"):
        intake(corrupted(photo_bytes(fmt)))


# --- the submit stage, on real Redis and the real local API server ---


@pytest.fixture
def runtime(redis_url: str, emulator: EmulatorProcess, tmp_path: Path) -> Iterator[Runtime]:
    settings = Settings(
        _env_file=None, redis_url=redis_url, api_base_url=emulator.base_url,  # type: ignore[call-arg]
        public_key=emulator.public_key, private_key=emulator.private_key,
        files_root=tmp_path, rate_limit=100)
    rt = Runtime.build(settings)
    yield rt
    rt.client.close()


def test_a_truncated_jpeg_fails_the_job_before_any_call_naming_the_image(
        runtime: Runtime, emulator: EmulatorProcess, tmp_path: Path) -> None:
    path = tmp_path / "cut.jpg"
    path.write_bytes(truncated(photo_bytes("JPEG")))
    runtime.ledger.create("job-cut", str(path), {})

    outcome = submit_job(runtime, "job-cut")

    assert outcome.state is JobState.FAILED and outcome.task_uid is None
    record = runtime.ledger.get("job-cut")
    assert record is not None and record.state is JobState.FAILED
    assert (record.error_stage, record.error_code, record.error_field) == (
        "fetch", "invalid_input", "reference")
    assert record.error_message is not None
    assert str(path) in record.error_message and "cannot be decoded" in record.error_message
    assert "RemoveBackground" not in emulator.key_stats()["calls"]


# --- the local API server ---


def test_the_local_server_accepts_an_undecodable_image_and_its_task_ends_in_error(
        emulator: EmulatorProcess) -> None:
    emulator.configure(queue_s=0, run_s=0)
    raw = "data:image/jpeg;base64," + base64.b64encode(truncated(photo_bytes("JPEG"))).decode()
    answer = emulator.call("RemoveBackground", {"RawImage": raw}).json()
    assert answer["RetCode"] == 0, answer  # the header is fine: the call is accepted (and paid)

    entry = _finished_entry(emulator, answer["TaskUID"])

    assert entry["Status"] == "Error" and entry["ImgList"] == []
    assert entry["ErrorCode"] == 1002
    assert "could not be decoded" in entry["ErrorMassage"]
    assert emulator.key_stats()["credits_spent"] == 1


def test_a_large_undecodable_image_ends_in_error_too(emulator: EmulatorProcess) -> None:
    # Over 256 kB the server decodes beside the answer, while the task runs.
    noise = np.random.default_rng(9).integers(0, 256, (500, 500, 3), dtype=np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(noise).save(buffer, "PNG")
    raw = "data:image/png;base64," + base64.b64encode(truncated(buffer.getvalue())).decode()
    assert len(raw) > 256 * 1024
    emulator.configure(queue_s=0, run_s=0)
    uid = emulator.call("RemoveBackground", {"RawImage": raw}).json()["TaskUID"]
    entry = _finished_entry(emulator, uid)
    assert (entry["Status"], entry["ErrorCode"]) == ("Error", 1002)


def test_a_whole_image_still_finishes_and_its_result_downloads(emulator: EmulatorProcess) -> None:
    emulator.configure(queue_s=0, run_s=0)
    raw = "data:image/jpeg;base64," + base64.b64encode(photo_bytes("JPEG")).decode()
    uid = emulator.call("RemoveBackground", {"RawImage": raw}).json()["TaskUID"]
    entry = _finished_entry(emulator, uid)
    assert (entry["Status"], entry["ErrorCode"]) == ("Finished", 0)
    assert requests.get(entry["ImgList"][0], timeout=30).status_code == 200


def _finished_entry(emulator: EmulatorProcess, uid: str) -> dict[str, object]:
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        answer = emulator.call("ListTasksDetails", {"TaskUIDList": [uid]}).json()
        (entry,) = answer["TaskDetailList"]
        if entry["Status"] in ("Finished", "Error"):
            return dict(entry)
        time.sleep(0.02)
    raise AssertionError(f"task {uid} never finished")
