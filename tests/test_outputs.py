"""The output store: a job never overwrites a file it did not write, wherever the directory is
mounted, and a job collected again rewrites only its own files.

Machines sharing one output directory see it under their own paths (an NFS share mounted at
/mnt/a here and /srv/out there): the tests give one directory a second path with a bind mount
and save through both, with one OutputStore per "machine" on the suite's real Redis."""

from __future__ import annotations

import os
import stat
import subprocess
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis

from tasks.outputs.storage import OutputStore


def store(redis_url: str) -> OutputStore:
    return OutputStore(redis.Redis.from_url(redis_url, decode_responses=True))


@pytest.fixture
def two_paths(tmp_path: Path) -> Iterator[tuple[Path, Path]]:
    """One directory under two paths that do not resolve to each other (a bind mount)."""
    real, other = tmp_path / "share", tmp_path / "mnt-b"
    real.mkdir()
    other.mkdir()
    mounted = subprocess.run(["mount", "--bind", str(real), str(other)], capture_output=True,
                             check=False)
    if mounted.returncode != 0:
        pytest.skip(f"a bind mount needs root: {mounted.stderr.decode().strip()}")
    try:
        assert other.resolve() != real.resolve()
        yield real, other
    finally:
        subprocess.run(["umount", str(other)], check=False)


def test_a_job_never_overwrites_another_jobs_output_but_rewrites_its_own(
        redis_url: str, tmp_path: Path) -> None:
    outputs = store(redis_url)
    (tmp_path / "user.png").write_bytes(b"theirs")
    first = outputs.save(tmp_path, "job-a", ["photo.png"], [b"A"])
    second = outputs.save(tmp_path, "job-b", ["photo.png"], [b"B"])
    again = outputs.save(tmp_path, "job-a", ["photo.png"], [b"A2"])
    foreign = outputs.save(tmp_path, "job-c", ["user.png"], [b"C"])
    assert first == again == [str(tmp_path / "photo.png")]
    assert second == [str(tmp_path / "photo_2.png")]
    assert foreign == [str(tmp_path / "user_2.png")]
    assert (tmp_path / "photo.png").read_bytes() == b"A2"
    assert (tmp_path / "photo_2.png").read_bytes() == b"B"
    assert (tmp_path / "user.png").read_bytes() == b"theirs"


def test_outputs_are_readable_by_others_as_the_umask_allows(
        redis_url: str, tmp_path: Path) -> None:
    old = os.umask(0o027)
    try:
        [path] = store(redis_url).save(tmp_path, "job-a", ["photo.png"], [b"A"])
    finally:
        os.umask(old)
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o640


def test_two_machines_saving_the_same_names_through_two_mount_paths_never_overwrite(
        redis_url: str, two_paths: tuple[Path, Path]) -> None:
    real, other = two_paths
    machines = [(store(redis_url), real), (store(redis_url), other)]
    saved: dict[str, str] = {}  # job id -> the path its store returned
    start = threading.Barrier(2)

    def collect(machine: int) -> None:
        outputs, directory = machines[machine]
        start.wait()
        for i in range(100):
            job_id = f"m{machine}-job{i}"
            [path] = outputs.save(directory, job_id, ["photo.png"], [job_id.encode()])
            saved[job_id] = path

    threads = [threading.Thread(target=collect, args=(m,)) for m in (0, 1)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    names = [Path(path).name for path in saved.values()]
    assert len(saved) == 200 and len(set(names)) == 200  # one name per job, none shared
    for job_id, path in saved.items():
        assert (real / Path(path).name).read_bytes() == job_id.encode()


def test_a_job_collected_again_through_another_mount_path_rewrites_its_own_file(
        redis_url: str, two_paths: tuple[Path, Path]) -> None:
    real, other = two_paths
    first = store(redis_url).save(real, "job-x", ["photo.png", "photo-2.png"], [b"x1", b"y1"])
    store(redis_url).save(other, "job-y", ["photo.png"], [b"theirs"])  # takes photo_2.png
    again = store(redis_url).save(other, "job-x", ["photo.png", "photo-2.png"], [b"x2", b"y2"])
    assert [Path(p).name for p in first] == [Path(p).name for p in again]
    assert sorted(p.name for p in real.iterdir()) == ["photo-2.png", "photo.png", "photo_2.png"]
    assert (real / "photo.png").read_bytes() == b"x2"
    assert (real / "photo-2.png").read_bytes() == b"y2"
    assert (real / "photo_2.png").read_bytes() == b"theirs"


def test_a_name_differing_only_in_case_is_not_overwritten(redis_url: str,
                                                          tmp_path: Path) -> None:
    # On a case-insensitive filesystem (macOS, Windows shares) photo.png *is* Photo.png: the
    # claim is made by the filesystem itself, so its own rules decide, whatever they are.
    store(redis_url).save(tmp_path, "job-upper", ["Photo.png"], [b"upper"])
    [path] = store(redis_url).save(tmp_path, "job-lower", ["photo.png"], [b"lower"])
    assert (tmp_path / "Photo.png").read_bytes() == b"upper"
    assert Path(path).read_bytes() == b"lower"
    assert len(list(tmp_path.iterdir())) == 2


def test_a_file_someone_else_put_there_after_a_job_wrote_it_is_not_overwritten(
        redis_url: str, tmp_path: Path) -> None:
    store(redis_url).save(tmp_path, "job-a", ["photo.png"], [b"A"])
    (tmp_path / "photo.png").unlink()
    (tmp_path / "photo.png").write_bytes(b"a user's own file")  # not job-a's any more
    [path] = store(redis_url).save(tmp_path, "job-a", ["photo.png"], [b"A2"])
    assert Path(path).name == "photo_2.png"
    assert (tmp_path / "photo.png").read_bytes() == b"a user's own file"


def test_a_save_that_cannot_record_its_files_leaves_none_behind(
        redis_url: str, tmp_path: Path) -> None:
    import socket

    with socket.socket() as probe:  # a port nothing listens on: Redis is away
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    away = OutputStore(redis.Redis(port=port, socket_connect_timeout=1, decode_responses=True))
    with pytest.raises(redis.ConnectionError):
        away.save(tmp_path, "job-a", ["photo.png", "photo-2.png"], [b"A", b"B"])
    assert list(tmp_path.iterdir()) == []  # no claimed name left to look foreign later
    assert store(redis_url).save(tmp_path, "job-a", ["photo.png"], [b"A"]) == [
        str(tmp_path / "photo.png")]
