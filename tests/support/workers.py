"""Real `celery -A tasks worker` processes for the pipeline tests, each with its own
environment, each in its own process group so a test can stop or SIGKILL it whole."""

from __future__ import annotations

import contextlib
import hashlib
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from config import Settings
from tests.support.image_server import ImageServer
from tests.support.redis_server import RedisServer

__all__ = ["ImageServer", "Pipeline", "WorkerProcess", "module_pipeline", "pipeline_overrides",
           "pipeline_running", "pipeline_settings", "running_workers", "settings_env",
           "write_pngs"]

REPO_ROOT = Path(__file__).resolve().parents[2]
READY_TIMEOUT_S = 60.0


def settings_env(overrides: Mapping[str, Any]) -> dict[str, str]:
    """The process environment for these settings: ours without any CUTOUT_* variable, plus
    CUTOUT_<FIELD> for each override (lists joined by commas)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("CUTOUT_")}
    for name, value in overrides.items():
        if isinstance(value, list | tuple | set | frozenset):
            value = ",".join(str(v) for v in value)
        env[f"CUTOUT_{name.upper()}"] = str(value)
    return env


def pipeline_settings(overrides: Mapping[str, Any]) -> Settings:
    """The Settings a worker started with settings_env(overrides) will load."""
    return Settings(**overrides)


@dataclass
class WorkerProcess:
    """One worker (prefork pool of `concurrency` processes) logging to `log_path`."""

    name: str
    env: dict[str, str]
    log_path: Path
    concurrency: int = 2
    process: subprocess.Popen[bytes] | None = None
    app: str = "tasks"  # the module `celery -A` loads (benchmarks start others)

    def start(self) -> None:
        args = [sys.executable, "-m", "celery", "-A", self.app, "worker", "-P", "prefork",
                "-c", str(self.concurrency), "-n", f"{self.name}@%h", "--loglevel", "INFO",
                "--without-mingle", "--without-gossip"]
        with self.log_path.open("ab") as log:
            self.process = subprocess.Popen(args, cwd=REPO_ROOT, env=self.env, stdout=log,
                                            stderr=subprocess.STDOUT, start_new_session=True)

    def wait_ready(self) -> None:
        deadline = time.monotonic() + READY_TIMEOUT_S
        while time.monotonic() < deadline:
            if " ready." in self.log_text():
                return
            if self.process is None or self.process.poll() is not None:
                break
            time.sleep(0.1)
        raise RuntimeError(f"worker {self.name} did not start:\n{self.log_text()[-3000:]}")

    def log_text(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def alive(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def kill(self) -> None:
        """SIGKILL the whole worker (main process and pool), as a crash would."""
        self._signal(signal.SIGKILL)
        self._reap(5)

    def terminate_main(self) -> None:
        """SIGTERM to the main process only, as `docker stop` or Kubernetes send it."""
        if self.process is not None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(self.process.pid, signal.SIGTERM)

    def wait_stopped(self, timeout_s: float) -> bool:
        """Wait for the worker to exit by itself; True if it did."""
        return self._reap(timeout_s)

    def stop(self) -> None:
        """A warm shutdown; SIGKILL if it takes longer than 15 s."""
        if not self.alive():
            self._reap(1)
            return
        self._signal(signal.SIGTERM)
        if not self._reap(15):
            self.kill()

    def _signal(self, sig: signal.Signals) -> None:
        if self.process is not None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.process.pid, sig)

    def _reap(self, timeout_s: float) -> bool:
        if self.process is None:
            return True
        try:
            self.process.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            return False
        # The pool children share the group; make sure none outlives its parent.
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.process.pid, signal.SIGKILL)
        self.process = None
        return True


@contextmanager
def running_workers(env: dict[str, str], log_dir: Path, count: int = 1,
                    concurrency: int = 2, app: str = "tasks") -> Iterator[list[WorkerProcess]]:
    """Start `count` workers with this environment, wait until each is ready, stop them all
    afterwards (whatever happened)."""
    log_dir.mkdir(parents=True, exist_ok=True)
    workers = [WorkerProcess(f"w{i}-{os.getpid()}-{log_dir.name}", env,
                             log_dir / f"worker{i}.log", concurrency, app=app)
               for i in range(count)]
    try:
        for worker in workers:
            worker.start()
        for worker in workers:
            worker.wait_ready()
        yield workers
    finally:
        for worker in workers:
            worker.stop()


def pipeline_overrides(redis_url: str, api_base_url: str, public_key: str, private_key: str,
                       root: Path, **more: Any) -> dict[str, Any]:
    """Settings for a pipeline test: fast timing, short polls, files and outputs under root."""
    base: dict[str, Any] = {
        "redis_url": redis_url, "api_base_url": api_base_url, "public_key": public_key,
        "private_key": private_key, "files_root": str(root), "output_dir": str(root / "out"),
        "rate_limit": 200, "rate_burst": 1, "max_in_flight": 16,
        "poll_interval_s": 0.5, "poll_max_interval_s": 4, "poll_deadline_s": 120,
        "visibility_timeout_s": 60, "task_time_limit_s": 30, "connect_timeout_s": 2,
        "read_timeout_s": 10, "fetch_timeout_s": 5, "retry_base_delay_s": 0.2,
        "retry_max_delay_s": 2, "throttle_recovery_s": 10,
    }
    base.update(more)
    return base


def write_pngs(directory: Path, count: int, size: tuple[int, int] = (64, 48),
               prefix: str = "p") -> list[Path]:
    """count small distinct RGB PNGs (the pipeline's inputs). Distinct across calls too:
    one corner pixel encodes the file's path, so the same-cutout index (docs/costs.md) never
    takes two tests' images for one another (tests that want twins copy the files)."""
    from PIL import Image

    directory.mkdir(parents=True, exist_ok=True)
    paths = []
    for i in range(count):
        path = directory / f"{prefix}{i:04d}.png"
        image = Image.new("RGB", size, (i % 256, (i * 7) % 256, 200))
        image.putpixel((0, 0), tuple(hashlib.sha256(str(path).encode()).digest()[:3]))
        image.save(path)
        paths.append(path)
    return paths


@dataclass
class Pipeline:
    """Workers running against the suite's Redis and local API server, and what a test needs
    to talk to them: the same Settings, the input and output directories."""

    settings: Settings
    overrides: dict[str, Any]
    root: Path
    workers: list[WorkerProcess]

    @property
    def inputs(self) -> Path:
        return self.root / "in"

    @property
    def outputs(self) -> Path:
        return self.root / "out"

    def logs(self) -> str:
        return "\n".join(w.log_text()[-4000:] for w in self.workers)


@contextmanager
def pipeline_running(redis_url: str, emulator: Any, root: Path, *, count: int = 1,
                     concurrency: int = 4, app: str = "tasks", env: Mapping[str, str] | None = None,
                     **overrides: Any) -> Iterator[Pipeline]:
    """Workers started with pipeline_overrides(...) and these overrides; stopped afterwards.
    `emulator` is the EmulatorProcess of tests/support/emulator_server.py; `app` is the module
    the workers load, `env` more variables for them (benchmarks use both)."""
    values = pipeline_overrides(redis_url, emulator.base_url, emulator.public_key,
                                emulator.private_key, root, **overrides)
    (root / "in").mkdir(parents=True, exist_ok=True)
    with running_workers({**settings_env(values), **(env or {})}, root, count, concurrency,
                         app) as workers:
        yield Pipeline(pipeline_settings(values), values, root, workers)


def module_pipeline(redis_server: RedisServer, emulator: Any, root: Path,
                    **options: Any) -> Iterator[Pipeline]:
    """A test module's pipeline (`yield from` it in a module-scoped fixture) on the suite's
    Redis, emptied first: never while workers run, kombu keeps its bindings there."""
    redis_server.client().flushall()
    with pipeline_running(redis_server.url, emulator, root, **options) as running:
        yield running
