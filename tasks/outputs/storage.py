"""The output store: a directory, files named after the input, never another job's file.

A name is claimed on the filesystem itself: the final name is created with O_CREAT|O_EXCL, which
only one process can win, on whichever machine and under whichever mount path, and which follows
the filesystem's own case rules (on a case-insensitive share photo.png and Photo.png are one
name). The picture, written beside it first, is renamed over the claimed name. Which files are
a job's own (so that a job collected again rewrites them, and nothing else) is recorded in Redis
by the files' identity (inode, size, modification time), which is the same through every mount
path, never by a path.
"""

from __future__ import annotations

import os
import secrets
from collections.abc import Sequence
from pathlib import Path

import redis

__all__ = ["OutputStore", "output_names"]

# A job's record of its own files expires (the keys would otherwise grow forever); results are
# collected within the API's 24 h, so a month is plenty. After expiry the files are foreign.
OWNED_TTL_S = 30 * 24 * 3600
MAX_VARIANTS = 10_000

# KEYS: the job's owned hash. ARGV: ttl s, then (name, identities space-separated) pairs. Adds
# the identities to each name's (keeping the three before them) and renews the expiry: one
# round trip for all of a job's files.
_REMEMBER = """
for p = 2, #ARGV, 2 do
  local ids = {}
  for id in string.gmatch(redis.call('HGET', KEYS[1], ARGV[p]) or '', '%S+') do
    table.insert(ids, id)
  end
  local kept = {}
  for i = math.max(1, #ids - 2), #ids do table.insert(kept, ids[i]) end
  table.insert(kept, ARGV[p + 1])
  redis.call('HSET', KEYS[1], ARGV[p], table.concat(kept, ' '))
end
redis.call('EXPIRE', KEYS[1], ARGV[1])
return 1
"""


def owned_key(job_id: str) -> str:
    """Hash: output name -> identities (space-separated) of the files this job wrote there."""
    return f"cutout:outputs:{job_id}"


def output_names(stem: str, count: int, *, only_mask: bool) -> list[str]:
    """The file names of a job's results: photo.png (photo.mask.png for a mask), then
    photo-2.png... when the API returned several images."""
    suffix = ".mask.png" if only_mask else ".png"
    return [f"{stem}{suffix}" if i == 0 else f"{stem}-{i + 1}{suffix}" for i in range(count)]


class OutputStore:
    """Writes result images into a directory."""

    def __init__(self, client: redis.Redis) -> None:
        self.redis = client
        self._remember_script = client.register_script(_REMEMBER)

    def save(self, directory: Path, job_id: str, names: Sequence[str],
             images: Sequence[bytes]) -> list[str]:
        """Write each image under its name (or a free variant of it); return absolute paths.

        Each picture is first written to a temporary file, then its name claimed; one Redis
        call records every claimed name and picture as this job's, before the renames: a crash
        after a claim or a rename still finds the files ours."""
        directory = directory.absolute()
        directory.mkdir(parents=True, exist_ok=True)
        tmps: list[Path] = []
        owned = _Owned(self.redis, job_id)
        try:
            for name, data in zip(names, images, strict=True):
                tmps.append(_write_beside(directory / name, data))
            paths = [self._claim(directory, name, owned) for name in names]
            for path, tmp in zip(paths, tmps, strict=True):
                owned.add(path.name, _identity(os.stat(tmp)))
            self._remember(job_id, owned.new)
            owned.created.clear()  # recorded: ours from now on, whatever happens
            for path, tmp in zip(paths, tmps, strict=True):
                os.replace(tmp, path)
        except BaseException:
            # Names claimed but never recorded (Redis away) would be foreign files for good.
            for leftover in tmps + owned.created:
                leftover.unlink(missing_ok=True)
            raise
        return [str(path) for path in paths]

    def _claim(self, directory: Path, name: str, owned: _Owned) -> Path:
        """The first of photo.png, photo_2.png, photo_3.png... that this job creates now, or
        that holds a file this job wrote before (a job that runs again rewrites only its own).
        A name created here goes into `owned.new`, to be recorded before anything is renamed
        over it."""
        base, ext = _split(name)
        for n in range(1, MAX_VARIANTS):
            candidate = directory / (name if n == 1 else f"{base}_{n}{ext}")
            try:
                fd = os.open(candidate, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
            except FileExistsError:
                if _is_ours(candidate, owned.before(candidate.name)):
                    return candidate
                continue
            owned.created.append(candidate)
            try:
                owned.add(candidate.name, _identity(os.fstat(fd)))
            finally:
                os.close(fd)
            return candidate
        raise RuntimeError(f"no free output name for {name} in {directory}")

    def _remember(self, job_id: str, new: dict[str, list[str]]) -> None:
        pairs = [item for name, ids in new.items() for item in (name, " ".join(ids))]
        self._remember_script(keys=[owned_key(job_id)], args=[OWNED_TTL_S, *pairs])


class _Owned:
    """A job's own files: those recorded before (read from Redis only when a name is found
    taken, which a first collect rarely meets) and the identities to record now."""

    def __init__(self, client: redis.Redis, job_id: str) -> None:
        self.redis = client
        self.job_id = job_id
        self._before: dict[str, str] | None = None
        self.new: dict[str, list[str]] = {}  # name -> identities, in the order written
        self.created: list[Path] = []  # names created (empty) here and not yet recorded

    def before(self, name: str) -> str:
        if self._before is None:
            self._before = self.redis.hgetall(owned_key(self.job_id))  # type: ignore[assignment]
        assert self._before is not None
        return self._before.get(name, "")

    def add(self, name: str, identity: str) -> None:
        self.new.setdefault(name, []).append(identity)


def _identity(st: os.stat_result) -> str:
    """What tells one file from another through any mount path: inode, size, mtime."""
    return f"{st.st_ino}:{st.st_size}:{st.st_mtime_ns}"


def _is_ours(path: Path, identities: str) -> bool:
    try:
        return _identity(os.stat(path)) in identities.split()
    except FileNotFoundError:
        return False


def _split(name: str) -> tuple[str, str]:
    for ext in (".mask.png", ".png"):
        if name.endswith(ext):
            return name[: -len(ext)], ext
    stem, dot, ext = name.rpartition(".")
    return (stem, dot + ext) if dot else (name, "")


def _write_beside(path: Path, data: bytes) -> Path:
    """The picture in a temporary file next to `path`, to be renamed over it, so readers never
    see half an image. Created 0666 less the umask (mkstemp's 0600 would hide cutouts from
    other users)."""
    tmp = path.with_name(f".{path.name}.{secrets.token_hex(6)}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return tmp
