"""The output store: a directory, files named after the input, never another job's file.

A name is claimed in Redis (SET NX) before it is written, so two jobs on two machines sharing
one directory cannot take the same name; a job that runs again reuses its own names.
"""

from __future__ import annotations

import os
import secrets
from collections.abc import Sequence
from pathlib import Path

import redis

__all__ = ["OutputStore", "output_names"]

# Name claims expire (the keys would otherwise grow forever); an expired claim is still safe:
# the file then exists, so another job takes the next free name rather than overwrite it.
CLAIM_TTL_S = 30 * 24 * 3600


def output_names(stem: str, count: int, *, only_mask: bool) -> list[str]:
    """The file names of a job's results: photo.png (photo.mask.png for a mask), then
    photo-2.png... when the API returned several images."""
    suffix = ".mask.png" if only_mask else ".png"
    return [f"{stem}{suffix}" if i == 0 else f"{stem}-{i + 1}{suffix}" for i in range(count)]


class OutputStore:
    """Writes result images into a directory."""

    def __init__(self, client: redis.Redis) -> None:
        self.redis = client

    def save(self, directory: Path, job_id: str, names: Sequence[str],
             images: Sequence[bytes]) -> list[str]:
        """Write each image under its name (or a free variant of it); return absolute paths."""
        directory.mkdir(parents=True, exist_ok=True)
        paths = []
        for name, data in zip(names, images, strict=True):
            path = self._claim(directory.resolve(), name, job_id)
            _write_atomically(path, data)
            paths.append(str(path))
        return paths

    def _claim(self, directory: Path, name: str, job_id: str) -> Path:
        """The first of photo.png, photo_2.png, photo_3.png... that is free or already
        this job's (a job that runs again overwrites only its own files)."""
        base, ext = _split(name)
        for n in range(1, 10_000):
            candidate = directory / (name if n == 1 else f"{base}_{n}{ext}")
            key = f"cutout:output:{candidate}"
            if self.redis.set(key, job_id, nx=True, ex=CLAIM_TTL_S):
                if not candidate.exists():
                    return candidate
                self.redis.set(key, "", ex=CLAIM_TTL_S)  # a file cutout did not write
            elif self.redis.get(key) == job_id:
                return candidate
        raise RuntimeError(f"no free output name for {name} in {directory}")


def _split(name: str) -> tuple[str, str]:
    for ext in (".mask.png", ".png"):
        if name.endswith(ext):
            return name[: -len(ext)], ext
    stem, dot, ext = name.rpartition(".")
    return (stem, dot + ext) if dot else (name, "")


def _write_atomically(path: Path, data: bytes) -> None:
    """Write to a temporary file then rename, so readers never see half an image. The file
    is created 0666 less the umask (mkstemp's 0600 would hide cutouts from other users)."""
    tmp = path.with_name(f".{path.name}.{secrets.token_hex(6)}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
