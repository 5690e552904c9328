"""`make run`'s parts: the sample photos, and the processes it starts and always stops."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
import redis
from PIL import Image

from producers.demo import SAMPLES, printable_url, write_samples
from producers.processes import ProcessGroup, redis_answers


def test_the_sample_photos_are_real_colour_photos(tmp_path: Path) -> None:
    paths = write_samples(tmp_path / "samples")
    assert [p.stem for p in paths] == list(SAMPLES)
    for path in paths:
        with Image.open(path) as image:
            assert image.format == "JPEG" and image.mode == "RGB"
            assert min(image.size) >= 300


def test_a_started_redis_answers_and_is_gone_after_stop(tmp_path: Path) -> None:
    group = ProcessGroup(tmp_path / "logs")
    try:
        url = group.start_redis(tmp_path)
        assert redis.Redis.from_url(url).set("demo", "1")
    finally:
        group.stop()
    assert not redis_answers(url)
    assert group.started == []


def test_extra_environment_reaches_the_child_process(tmp_path: Path) -> None:
    group = ProcessGroup(tmp_path / "logs")
    script = "import os; print(os.environ['CUTOUT_DEMO_PROBE'])"
    process = group.start("probe", [sys.executable, "-c", script], {"CUTOUT_DEMO_PROBE": "here"})
    assert process.wait(timeout=30) == 0
    assert group.log_path("probe").read_text().strip() == "here"
    group.stop()


def test_a_process_that_died_is_reported_with_its_log(tmp_path: Path) -> None:
    group = ProcessGroup(tmp_path / "logs")
    script = "import sys; print('cannot reach the broker'); sys.exit(3)"
    group.start("worker", [sys.executable, "-c", script]).wait(timeout=30)
    with pytest.raises(RuntimeError, match=r"worker exited with code 3(.|\n)*cannot reach"):
        group.check_alive()
    group.stop()


def test_stop_ends_a_running_process(tmp_path: Path) -> None:
    group = ProcessGroup(tmp_path / "logs")
    process = group.start("sleeper", [sys.executable, "-c", "import time; time.sleep(600)"])
    group.stop()
    assert process.returncode is not None


def test_a_redis_password_is_never_printed() -> None:
    assert printable_url("redis://:s3cret@db:6380/1") == "redis://:***@db:6380/1"
    assert printable_url("rediss://app:s3cret@db/0") == "rediss://app:***@db/0"
    assert printable_url("redis://127.0.0.1:6379/0") == "redis://127.0.0.1:6379/0"
