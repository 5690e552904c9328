"""The whole pipeline on this machine: achieved submit rate against the rate limit L (the
baseline: the most the API allows), and ListTasksDetails calls per job against one poll per
job (the baseline of polling each TaskUID on its own).

Real Redis on a free port, the local API server enforcing L calls/s, real `celery -A tasks
worker` processes. Usage: `python -m bench pipeline` or
`python -m bench.pipeline --jobs 300 --rate 10 --workers 4 --concurrency 4`.
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Sequence

from bench._stack import bench_stack
from producers import api
from tests.support.emulator_server import EmulatorProcess
from tests.support.workers import pipeline_running, write_pngs

__all__ = ["main"]


def run(jobs: int, rate: float, workers: int, concurrency: int) -> None:
    with bench_stack(queue_s=0.5, run_s=1.0) as (root, redis_server, emulator):
        emulator.configure(rate_limit=rate)
        with pipeline_running(redis_server.url, emulator, root, count=workers,
                              concurrency=concurrency, rate_limit=rate, poll_interval_s=3,
                              poll_max_interval_s=8) as pipeline:
            files = write_pngs(pipeline.inputs, jobs)
            started = time.monotonic()
            ids = api.enqueue_many([str(p) for p in files], settings=pipeline.settings)
            records = api.wait(ids, timeout_s=jobs / rate * 3 + 60, settings=pipeline.settings)
            elapsed = time.monotonic() - started
        report(emulator, rate, jobs, elapsed,
               sum(r.state == "SUCCEEDED" for r in records.values()))


def report(emulator: EmulatorProcess, rate: float, jobs: int, elapsed: float,
           succeeded: int) -> None:
    stats = emulator.key_stats()
    submits = sorted(c["t"] for c in emulator.calls(action="RemoveBackground", outcome="ok"))
    span = submits[-1] - submits[0] if len(submits) > 1 else 0.0
    achieved = (len(submits) - 1) / span if span > 0 else 0.0  # one job: no rate to measure
    polls = stats["calls"].get("ListTasksDetails", {}).get("ok", 0)
    throttled = sum(o.get("throttled", 0) for o in stats["calls"].values())
    print(f"{succeeded}/{jobs} jobs succeeded in {elapsed:.1f} s")
    print(f"submit rate: {achieved:.2f}/s against L = {rate:g}/s: ratio {achieved / rate:.3f} "
          f"(busiest one-second window {stats['max_calls_in_window']}, {throttled} throttled)")
    print(f"ListTasksDetails calls per job: {polls / jobs:.3f} against 1.0 polling each task "
          f"on its own: ratio {polls / jobs:.3f}")


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.pipeline", description=__doc__)
    parser.add_argument("--jobs", type=int, default=300)
    parser.add_argument("--rate", type=float, default=10.0)
    parser.add_argument("--workers", type=int, default=4)
    parser.add_argument("--concurrency", type=int, default=4)
    args = parser.parse_args(argv if argv is not None else [])
    run(args.jobs, args.rate, args.workers, args.concurrency)


if __name__ == "__main__":
    import sys

    main(sys.argv[1:])
