"""The `cutout` command, run as users run it: the installed entry point in a subprocess, on the
suite's real Redis, with real workers and the real local API server."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from PIL import Image
from pydantic import ValidationError

from config import Settings
from producers.processes import free_port
from producers.startup import describe_validation
from tests.support.emulator_server import EmulatorProcess
from tests.support.workers import (
    ImageServer,
    WorkerProcess,
    pipeline_overrides,
    running_workers,
    settings_env,
)

# The installed entry point, beside the interpreter running the suite (.venv/bin/cutout).
CUTOUT = Path(sys.executable).parent / "cutout"
ALL_ZERO = {
    "ACCEPTED": 0, "SUBMITTING": 0, "SUBMITTED": 0, "SUCCEEDED": 0, "FAILED": 0,
    "NEEDS_RECONCILIATION": 0, "ON_HOLD": 0,
}


def cutout(
    *args: str, env: dict[str, str], timeout_s: float = 120
) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(CUTOUT), *args], capture_output=True, text=True, env=env,
                          timeout=timeout_s, check=False)


def batch_counts(batch: str, env: dict[str, str]) -> dict[str, int]:
    result = cutout("status", "--batch", batch, "--json", env=env)
    assert result.returncode == 0, result.stderr
    counts: dict[str, int] = json.loads(result.stdout)
    return counts


@pytest.fixture
def images(tmp_path: Path) -> list[Path]:
    """Three small photos: a subject on a plain background."""
    folder = tmp_path / "in"
    folder.mkdir()
    paths = []
    for i, colour in enumerate([(200, 30, 30), (30, 200, 30), (30, 30, 200)]):
        image = Image.new("RGB", (64, 48), (235, 235, 235))
        image.paste(colour, (16, 12, 48, 40))
        path = folder / f"photo{i}.png"
        image.save(path)
        paths.append(path)
    return paths


@pytest.fixture
def env(redis_url: str, emulator: EmulatorProcess, tmp_path: Path) -> dict[str, str]:
    """The environment of the CLI and the workers: the suite's Redis and local API server;
    local files may be read below tmp_path."""
    overrides = pipeline_overrides(redis_url, emulator.base_url, emulator.public_key,
                                   emulator.private_key, tmp_path, fetch_allow="127.0.0.1")
    return settings_env(overrides)


@pytest.fixture
def workers(env: dict[str, str], tmp_path: Path) -> Iterator[list[WorkerProcess]]:
    with running_workers(env, tmp_path, count=1, concurrency=2) as started:
        yield started


def test_an_out_of_range_option_is_refused_naming_the_field_and_nothing_is_queued(
    env: dict[str, str], tmp_path: Path, images: list[Path]
) -> None:
    result = cutout("enqueue", *map(str, images), "--batch", "bad", "--erode-size", "99",
                    env=env)
    assert result.returncode == 2
    assert "ErodeSize" in result.stderr
    assert str(images[0]) in result.stderr
    assert "nothing was queued" in result.stderr
    assert batch_counts("bad", env) == ALL_ZERO


def test_one_bad_row_in_a_manifest_refuses_the_whole_run(
    env: dict[str, str], tmp_path: Path, images: list[Path]
) -> None:
    manifest = tmp_path / "list.csv"
    manifest.write_text(
        "reference,Box,HairOptimization\n"
        f"{images[0]},,on\n"
        f'{images[1]},"10,10,5,5",\n'
    )
    result = cutout("enqueue", "--manifest", str(manifest), "--batch", "rows", env=env)
    assert result.returncode == 2
    assert f"{images[1]}: field Box" in result.stderr
    assert str(images[0]) not in result.stderr
    assert batch_counts("rows", env) == ALL_ZERO


def test_a_reference_that_does_not_exist_is_refused_before_queueing(
    env: dict[str, str], tmp_path: Path
) -> None:
    result = cutout("enqueue", str(tmp_path / "missing.png"), "--batch", "missing", env=env)
    assert result.returncode == 2
    assert "missing.png" in result.stderr
    assert batch_counts("missing", env) == ALL_ZERO


def test_status_of_an_unknown_job_says_so(env: dict[str, str], tmp_path: Path) -> None:
    result = cutout("status", "no-such-job", env=env)
    assert result.returncode == 1
    assert "no job no-such-job" in result.stderr


def test_the_emulator_command_passes_its_flags_through(env: dict[str, str], tmp_path: Path) -> None:
    result = cutout("emulator", "--help", env=env)
    assert result.returncode == 0
    assert "--rate-limit" in result.stdout


def test_enqueue_and_wait_ends_with_every_cutout_and_exit_zero(
    env: dict[str, str], tmp_path: Path, images: list[Path], emulator: EmulatorProcess,
    workers: list[WorkerProcess],
) -> None:
    out = tmp_path / "out"
    # Two files, and the third photo from an http URL on loopback (allowed for this test).
    with ImageServer(images[2].parent) as server:
        result = cutout("enqueue", str(images[0]), str(images[1]), f"{server.url}/photo2.png",
                        "--batch", "good", "--out", str(out), "--wait", "--erode-size", "5",
                        env=env)
    assert result.returncode == 0, result.stdout + result.stderr
    assert batch_counts("good", env) == {**ALL_ZERO, "SUCCEEDED": 3}
    lines = cutout("results", "--batch", "good", env=env).stdout.splitlines()
    assert len(lines) == 3
    for line in lines:
        reference, paths = line.split(" -> ")
        cut = Path(paths)
        assert cut.parent == out and cut.stem == Path(reference).stem
        with Image.open(cut) as image:
            assert image.mode == "RGBA" and image.size == (64, 48)
    assert emulator.key_stats()["calls"]["RemoveBackground"]["ok"] == 3


def test_enqueue_run_again_with_the_same_idempotency_key_pays_once_per_image(
    env: dict[str, str], tmp_path: Path, images: list[Path], emulator: EmulatorProcess,
    workers: list[WorkerProcess],
) -> None:
    args = ["enqueue", *map(str, images), "--batch", "idem", "--out", str(tmp_path / "out"),
            "--idempotency-key", "nightly-2024-06-01", "--wait"]
    first = cutout(*args, env=env)
    again = cutout(*args, env=env)  # a cron job that runs twice, or a retry after a timeout
    assert first.returncode == 0 and again.returncode == 0, first.stderr + again.stderr
    assert "queued 3 job(s)" in again.stdout
    assert batch_counts("idem", env) == {**ALL_ZERO, "SUCCEEDED": 3}
    assert emulator.key_stats()["calls"]["RemoveBackground"] == {"ok": 3}
    reused = cutout("enqueue", str(images[0]), "--batch", "idem", "--idempotency-key",
                    "nightly-2024-06-01", env=env)
    assert reused.returncode == 2 and "--idempotency-key" in reused.stderr


def test_a_failed_job_makes_wait_exit_non_zero_and_status_gives_the_reason(
    env: dict[str, str], tmp_path: Path, images: list[Path], emulator: EmulatorProcess,
    workers: list[WorkerProcess],
) -> None:
    # The Box is valid on its own but reaches outside the 64x48 image: the worker refuses it.
    result = cutout("enqueue", str(images[0]), "--batch", "outside", "--box", "0,0,500,500",
                    "--out", str(tmp_path / "out"), "--wait", env=env)
    assert result.returncode == 1
    assert batch_counts("outside", env) == {**ALL_ZERO, "FAILED": 1}
    status = cutout("status", "--batch", "outside", env=env)
    assert "FAILED" in status.stdout and "Box" in status.stdout
    retried = cutout("retry", "--batch", "outside", "--wait", env=env)
    assert "re-queued 1 failed job" in retried.stdout
    assert retried.returncode == 1


def test_brackets_in_a_reference_are_shown_as_written(tmp_path: Path) -> None:
    # Rich would read `[/]` as markup and fail, or swallow `[red]`; the refusal quotes the path.
    env = settings_env({"redis_url": f"redis://127.0.0.1:{free_port()}/0"})
    result = cutout("enqueue", str(tmp_path / "a[/]b[red].png"), env=env)
    assert result.returncode == 2
    assert f"{tmp_path / 'a[/]b[red].png'}: no such file" in result.stderr


def test_a_redis_that_does_not_answer_is_named_with_its_setting(tmp_path: Path) -> None:
    env = settings_env({"redis_url": f"redis://127.0.0.1:{free_port()}/0"})
    result = cutout("status", "--batch", "any", env=env)
    assert result.returncode == 1
    assert result.stderr.startswith("error: cannot reach Redis (CUTOUT_REDIS_URL)")
    assert "Traceback" not in result.stderr


def test_a_broker_that_does_not_answer_is_named_and_the_recorded_job_stays_accepted(
    redis_url: str, images: list[Path]
) -> None:
    env = settings_env({"redis_url": redis_url,
                        "broker_url": f"redis://127.0.0.1:{free_port()}/0"})
    result = cutout("enqueue", str(images[0]), "--batch", "no-broker", env=env)
    assert result.returncode == 1
    assert result.stderr.startswith("error: cannot reach the broker (CUTOUT_BROKER_URL")
    assert "do not enqueue them again" in result.stderr
    assert batch_counts("no-broker", env) == {**ALL_ZERO, "ACCEPTED": 1}


# --- a bad CUTOUT_* value: one line and exit 2, never a traceback; help works regardless ---

BAD_SETTINGS = [
    pytest.param({"rate_limit": "abc"}, "CUTOUT_RATE_LIMIT", "'abc'", id="not-a-number"),
    pytest.param({"visibility_timeout_s": "5"}, "CUTOUT_VISIBILITY_TIMEOUT_S", "must exceed",
                 id="breaks-a-timing-rule"),
    pytest.param({"private_key_file": "/nonexistent"}, "CUTOUT_PRIVATE_KEY_FILE",
                 "/nonexistent: No such file", id="missing-key-file"),
]


def bad_env(overrides: dict[str, str]) -> dict[str, str]:
    # A Redis nobody listens on: a command that got past the settings would fail differently.
    return settings_env({"redis_url": f"redis://127.0.0.1:{free_port()}/0", **overrides})


@pytest.mark.parametrize(("overrides", "variable", "reason"), BAD_SETTINGS)
def test_help_works_whatever_the_settings_say(
    overrides: dict[str, str], variable: str, reason: str
) -> None:
    env = bad_env(overrides)
    for args in (["--help"], ["status", "--help"], ["enqueue", "--help"]):
        result = cutout(*args, env=env)
        assert result.returncode == 0, result.stderr
        assert result.stdout.startswith("Usage: cutout")


@pytest.mark.parametrize(("overrides", "variable", "reason"), BAD_SETTINGS)
def test_a_bad_setting_is_one_line_naming_the_variable_and_exit_two(
    overrides: dict[str, str], variable: str, reason: str
) -> None:
    result = cutout("status", "--batch", "x", env=bad_env(overrides))
    assert result.returncode == 2
    assert "Traceback" not in result.stderr
    assert len(result.stderr.splitlines()) == 1, result.stderr
    assert result.stderr.startswith(f"cutout: bad setting {variable}: ")
    assert reason in result.stderr
    assert result.stdout == ""


def test_a_bad_setting_is_reported_before_the_command_line_is_used(tmp_path: Path) -> None:
    # Nothing is read or queued: the reference does not even exist.
    env = bad_env({"rate_limit": "abc", "rate_burst": "0"})
    result = cutout("enqueue", str(tmp_path / "missing.png"), env=env)
    assert result.returncode == 2
    assert len(result.stderr.splitlines()) == 1, result.stderr
    assert "CUTOUT_RATE_LIMIT: " in result.stderr and "CUTOUT_RATE_BURST: " in result.stderr


def test_a_bad_setting_message_never_shows_the_private_key() -> None:
    env = bad_env({"rate_limit": "abc", "private_key": "very-secret-value"})
    result = cutout("status", "--batch", "x", env=env)
    assert result.returncode == 2
    assert "very-secret-value" not in result.stderr + result.stdout
    # A refused PrivateKey is named but its value is not quoted back.
    with pytest.raises(ValidationError) as refused:
        Settings.model_validate({"private_key": 12345678, "rate_limit": "abc"})
    line = describe_validation(refused.value)
    assert "CUTOUT_PRIVATE_KEY: " in line and "'abc'" in line
    assert "12345678" not in line


def test_a_worker_with_a_bad_setting_still_refuses_to_start() -> None:
    celery = Path(sys.executable).parent / "celery"
    result = subprocess.run([str(celery), "-A", "tasks", "worker"], capture_output=True,
                            text=True, env=bad_env({"rate_limit": "abc"}), timeout=120,
                            check=False)
    assert result.returncode != 0
    assert "rate_limit" in result.stderr
