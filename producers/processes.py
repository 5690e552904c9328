"""The processes `make run` starts (Redis, the local API server, a worker, Flower), and their end.

Each one runs in its own session, so a Ctrl-C reaches only the demo, which then stops them in
reverse order: SIGTERM, a grace period, SIGKILL. Output goes to one log file per process.
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import redis

__all__ = ["ProcessGroup", "free_port", "port_is_free", "redis_answers"]

STOP_GRACE_S = 10.0
LISTENING = re.compile(r"emulator listening on (http://\S+)")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def port_is_free(port: int) -> bool:
    with socket.socket() as sock:
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
        return True


def redis_answers(url: str) -> bool:
    try:
        return bool(redis.Redis.from_url(url, socket_connect_timeout=1, socket_timeout=1).ping())
    except (redis.RedisError, OSError, ValueError):
        return False


@dataclass
class ProcessGroup:
    """Processes started for one demo run, stopped together."""

    logs: Path
    started: list[tuple[str, subprocess.Popen[bytes]]] = field(default_factory=list)

    def start(
        self, name: str, command: Sequence[str], env: Mapping[str, str] | None = None
    ) -> subprocess.Popen[bytes]:
        """Start `command` with extra environment variables, its output in logs/NAME.log."""
        self.logs.mkdir(parents=True, exist_ok=True)
        # `env NAME=VALUE... command` adds to the inherited environment without this module
        # reading it; once `env` execs, the values are no longer on any command line.
        prefix = ["env", *(f"{k}={v}" for k, v in env.items())] if env else []
        with (self.logs / f"{name}.log").open("wb") as log:
            process = subprocess.Popen(
                [*prefix, *command], stdout=log, stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL, start_new_session=True,
            )
        self.started.append((name, process))
        return process

    def log_path(self, name: str) -> Path:
        return self.logs / f"{name}.log"

    def check_alive(self) -> None:
        """Raise RuntimeError naming the first process that exited, with its log's tail."""
        for name, process in self.started:
            if process.poll() is not None:
                tail = self.log_path(name).read_text(errors="replace").splitlines()[-15:]
                raise RuntimeError(
                    f"{name} exited with code {process.returncode}; last lines of "
                    f"{self.log_path(name)}:\n" + "\n".join(tail)
                )

    def stop(self) -> None:
        """SIGTERM every process group (newest first), then SIGKILL what is left after the
        grace period; a group takes a worker's pool processes along with it."""
        for _, process in reversed(self.started):
            if process.poll() is None:
                _signal_group(process, signal.SIGTERM)
        deadline = time.monotonic() + STOP_GRACE_S
        for _, process in reversed(self.started):
            try:
                process.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
            _signal_group(process, signal.SIGKILL)  # anything the leader left behind
        self.started.clear()

    def start_redis(self, directory: Path) -> str:
        """A redis-server on a free port, keeping its data in `directory`; its URL."""
        binary = shutil.which("redis-server")
        if binary is None:
            raise RuntimeError("no Redis answers and redis-server is not installed "
                               "(apt-get install redis-server, or set CUTOUT_REDIS_URL)")
        port = free_port()
        self.start("redis", [binary, "--port", str(port), "--bind", "127.0.0.1",
                             "--dir", str(directory), "--save", "", "--appendonly", "yes",
                             "--maxmemory-policy", "noeviction"])
        url = f"redis://127.0.0.1:{port}/0"
        self._wait_for(lambda: redis_answers(url), "redis", 10.0)
        return url

    def start_emulator(self, env: Mapping[str, str], timeout_s: float = 60.0) -> str:
        """The local API server on a free port; its base URL once it says it is listening."""
        self.start("emulator", [sys.executable, "-m", "emulator", "--host", "127.0.0.1",
                                "--port", "0"], env)
        found: list[str] = []

        def listening() -> bool:
            match = LISTENING.search(self.log_path("emulator").read_text(errors="replace"))
            if match:
                found.append(match.group(1))
            return bool(match)

        self._wait_for(listening, "emulator", timeout_s)
        return found[0]

    def _wait_for(self, ready: Callable[[], bool], name: str, timeout_s: float) -> None:
        deadline = time.monotonic() + timeout_s
        while not ready():
            self.check_alive()
            if time.monotonic() > deadline:
                raise RuntimeError(f"{name} did not get ready within {timeout_s:.0f} s")
            time.sleep(0.1)


def _signal_group(process: subprocess.Popen[bytes], sig: signal.Signals) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(process.pid, sig)
