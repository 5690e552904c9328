"""`cutout serve` in front of the pipeline: what the HTTP intake costs against the Python API,
and 1,000 references posted over HTTP end to end, each with a signed webhook.

1. Intake (no worker): one POST /v1/jobs of N references against `api.enqueue_many` of the
   same N (the baseline), best of three each.
2. End to end: N references posted over HTTP with a webhook URL, real workers, the local API
   server; the time until every job is SUCCEEDED and until every delivery is accepted, each
   job's calls paid, deliveries per job (the receiver checks each signature).

Usage: `python -m bench serve` or `python -m bench.serve --jobs 1000 --workers 2`.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from collections import Counter
from collections.abc import Callable, Sequence
from pathlib import Path

from producers import api
from tests.support.emulator_server import EmulatorProcess
from tests.support.receiver import Receiver
from tests.support.redis_server import RedisServer
from tests.support.serve_process import ServeProcess
from tests.support.workers import (
    pipeline_overrides,
    pipeline_running,
    pipeline_settings,
    settings_env,
    write_pngs,
)

__all__ = ["main"]

SECRET = "whsec_C2FVsBQIhrscChlQIMV+b5sSYspob7oD"
TOKEN = "bench-token"


def intake(redis_server: RedisServer, emulator: EmulatorProcess, root: Path, jobs: int) -> None:
    values = pipeline_overrides(redis_server.url, emulator.base_url, emulator.public_key,
                                emulator.private_key, root, serve_tokens=TOKEN)
    refs = [f"in/{p.name}" for p in write_pngs(root / "in", jobs)]
    absolute = [str(root / ref) for ref in refs]
    settings = pipeline_settings(values)
    with ServeProcess(settings_env(values), token=TOKEN) as service:
        http_s = _best_of(3, lambda i: service.post("/v1/jobs", json={
            "references": refs, "batch": f"http-{i}"}).raise_for_status())
        python_s = _best_of(3, lambda i: api.enqueue_many(absolute, batch=f"py-{i}",
                                                          settings=settings))
    print(f"intake of {jobs} references: POST /v1/jobs {http_s * 1000:.0f} ms, "
          f"api.enqueue_many {python_s * 1000:.0f} ms: ratio {http_s / python_s:.2f}")
    redis_server.client().flushall()


def end_to_end(redis_server: RedisServer, emulator: EmulatorProcess, root: Path, jobs: int,
               workers: int, concurrency: int) -> None:
    with pipeline_running(redis_server.url, emulator, root, count=workers,
                          concurrency=concurrency, fetch_allow="127.0.0.1",
                          webhook_secret=SECRET) as pipeline, \
            ServeProcess(settings_env({**pipeline.overrides, "serve_tokens": TOKEN}),
                         token=TOKEN) as service, Receiver(SECRET) as receiver:
        refs = [f"in/e2e/{p.name}" for p in write_pngs(pipeline.inputs / "e2e", jobs)]
        started = time.monotonic()
        answer = service.post("/v1/jobs", json={"references": refs, "batch": "e2e",
                                                "webhook_url": receiver.url})
        ids = [job["id"] for job in answer.json()["jobs"]]
        finished_s = _wait(lambda: service.get("/v1/batches/e2e", params={"limit": 1})
                           .json()["counts"]["SUCCEEDED"] == jobs, started, 600)
        delivered_s = _wait(lambda: len(receiver.accepted()) >= jobs, started, 600)
        paid = Counter(c["request_uuid"] for c in emulator.calls(action="RemoveBackground",
                                                                 outcome="ok"))
        per_job = Counter(d.event["data"]["job_id"] for d in receiver.accepted())
    print(f"{jobs} references over HTTP: all SUCCEEDED after {finished_s:.1f} s "
          f"({jobs / finished_s:.0f} jobs/s), every webhook accepted after {delivered_s:.1f} s")
    print(f"paid once each: {paid == dict.fromkeys(ids, 1)}; accepted deliveries per job: "
          f"{sum(per_job.values()) / jobs:.3f} (all signed: "
          f"{all(d.signed for d in receiver.deliveries)})")


def _best_of(rounds: int, action: Callable[[int], object]) -> float:
    times = []
    for i in range(rounds):
        started = time.perf_counter()
        action(i)
        times.append(time.perf_counter() - started)
    return min(times)


def _wait(done: Callable[[], bool], started: float, timeout_s: float) -> float:
    while not done():
        if time.monotonic() - started > timeout_s:
            raise RuntimeError("the run did not finish in time")
        time.sleep(0.2)
    return time.monotonic() - started


def run(jobs: int, workers: int, concurrency: int) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        redis_server = RedisServer(directory=root / "redis")
        (root / "redis").mkdir()
        redis_server.start()
        emulator = EmulatorProcess()
        try:
            emulator.start()
            intake(redis_server, emulator, root / "intake", jobs)
            end_to_end(redis_server, emulator, root / "e2e", jobs, workers, concurrency)
        finally:
            emulator.stop()
            redis_server.kill()


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.serve", description=__doc__)
    parser.add_argument("--jobs", type=int, default=1000)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--concurrency", type=int, default=2)
    args = parser.parse_args(argv if argv is not None else [])
    run(args.jobs, args.workers, args.concurrency)


if __name__ == "__main__":
    import sys

    main(sys.argv[1:])
