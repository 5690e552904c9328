"""The parts every pipeline benchmark starts: a scratch folder, its own Redis on a free port and
the local API server, all stopped again however the run ends."""

from __future__ import annotations

import tempfile
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

from tests.support.emulator_server import EmulatorProcess
from tests.support.redis_server import RedisServer

__all__ = ["bench_stack"]


@contextmanager
def bench_stack(queue_s: float, run_s: float, server_args: Sequence[str] = ()
                ) -> Iterator[tuple[Path, RedisServer, EmulatorProcess]]:
    """(scratch folder, Redis, local API server whose tasks queue queue_s and run run_s,
    started with server_args too)."""
    with tempfile.TemporaryDirectory() as tmp:
        redis_server = RedisServer(directory=Path(tmp))
        redis_server.start()
        emulator = EmulatorProcess(queue_s=queue_s, run_s=run_s, extra_args=list(server_args))
        try:
            emulator.start()
            yield Path(tmp), redis_server, emulator
        finally:
            emulator.stop()
            redis_server.kill()
