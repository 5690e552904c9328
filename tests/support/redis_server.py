"""A real redis-server for the suite, on a free port with its own directory.

It can be killed and restarted (with AOF on, like production) by the tests that need that.
The machine's own Redis on 6379 is never touched.
"""

from __future__ import annotations

import shutil
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import redis

from producers.processes import free_port

__all__ = ["RedisServer", "free_port", "redis_server", "redis_url"]


@dataclass
class RedisServer:
    """One redis-server process the suite owns."""

    directory: Path
    port: int = field(default_factory=free_port)
    # "always" is what docs/deploy.md asks of a production ledger; the suite's shared server
    # keeps "everysec" (faster), tests of crashes start their own with "always".
    appendfsync: str = "everysec"
    process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        binary = shutil.which("redis-server")
        if binary is None:
            raise RuntimeError("redis-server is not installed (apt-get install redis-server)")
        args = [
            binary, "--port", str(self.port), "--bind", "127.0.0.1",
            "--dir", str(self.directory), "--logfile", "redis.log", "--save", "",
            "--appendonly", "yes", "--appendfsync", self.appendfsync,
            "--maxmemory-policy", "noeviction",
        ]  # fmt: skip
        self.process = subprocess.Popen(args, stdout=subprocess.DEVNULL)
        self._wait_until_up()

    def _wait_until_up(self) -> None:
        deadline = time.monotonic() + 10
        with redis.Redis(port=self.port) as client:
            while time.monotonic() < deadline:
                if self.process is not None and self.process.poll() is not None:
                    break  # e.g. the port was taken between free_port() and the start
                try:
                    if client.ping():
                        return
                except redis.ConnectionError:
                    time.sleep(0.05)
        raise RuntimeError(f"redis-server on port {self.port} did not start; see "
                           f"{self.directory / 'redis.log'}")

    def kill(self) -> None:
        """SIGKILL, as a crash would."""
        if self.process is not None:
            self.process.kill()
            self.process.wait()
            self.process = None

    def restart(self) -> None:
        self.kill()
        self.start()

    def client(self) -> redis.Redis:
        return redis.Redis.from_url(self.url, decode_responses=True)


@pytest.fixture(scope="session")
def redis_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisServer]:
    server = RedisServer(directory=tmp_path_factory.mktemp("redis"))
    server.start()
    yield server
    server.kill()


@pytest.fixture
def redis_url(redis_server: RedisServer) -> str:
    """A clean database on the suite's own Redis for each test."""
    with redis_server.client() as client:
        client.flushall()
    return redis_server.url
