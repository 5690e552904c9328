"""Cost controls at the issue's sizes: calls made for the same images enqueued twice (against
the 2N a pipeline without the same-cutout index makes), with --force, and as two batches at
the same moment; credits spent under a daily budget by racing workers, jobs ON_HOLD, and the
time for all of them to finish once the budget is lifted.

Real Redis on a free port, the local API server counting calls and credits, real workers.
Usage: `python -m bench credits` or `python -m bench.credits --images 100 --jobs 120 --daily 50`.
"""

from __future__ import annotations

import argparse
import shutil
import time
from collections import Counter
from collections.abc import Sequence
from pathlib import Path

from bench._stack import bench_stack
from producers import api
from tasks.stages.budget import resume_held
from tasks.store.budgets import Budgets
from tasks.store.ledger import Ledger
from tests.support.emulator_server import EmulatorProcess
from tests.support.workers import Pipeline, pipeline_running, write_pngs

__all__ = ["main"]


def run(images: int, jobs: int, daily: float, workers: int) -> None:
    with (bench_stack(queue_s=0.2, run_s=0.3) as (root, redis_server, emulator),
          pipeline_running(redis_server.url, emulator, root, count=workers, concurrency=1,
                           rate_limit=50) as pipeline):
        budget_run(pipeline, emulator, jobs, daily)
        dedupe_runs(pipeline, emulator, images)


def budget_run(pipeline: Pipeline, emulator: EmulatorProcess, jobs: int, daily: float) -> None:
    s = pipeline.settings
    ledger = Ledger.from_url(s.redis_url)
    budgets = Budgets(ledger.redis, s.public_key, 0)
    budgets.set_daily(daily)
    files = write_pngs(pipeline.inputs / "budget", jobs, prefix="budget")
    started = time.monotonic()
    ids = api.enqueue_many([str(p) for p in files], batch="budget", settings=s)
    held = Counter(str(r.state) for r in api.wait(ids, timeout_s=600, settings=s).values())
    settled_s = time.monotonic() - started
    credits = emulator.key_stats()["credits_spent"]
    print(f"daily budget {daily:g}, {jobs} jobs, {len(pipeline.workers)} workers racing: "
          f"{credits} credits spent ({credits / daily:.2f} of the budget), "
          f"{held.get('ON_HOLD', 0)} ON_HOLD, {held.get('SUCCEEDED', 0)} SUCCEEDED "
          f"(settled in {settled_s:.1f} s)")
    started = time.monotonic()
    budgets.set_daily(0)
    api.publish(s, resume_held(ledger, budgets, s.credits_per_call))
    done = Counter(str(r.state) for r in api.wait(ids, timeout_s=600, settings=s).values())
    print(f"budget lifted: {dict(done)} after {time.monotonic() - started:.1f} s; "
          f"{emulator.key_stats()['credits_spent']} credits in all")


def dedupe_runs(pipeline: Pipeline, emulator: EmulatorProcess, images: int) -> None:
    s = pipeline.settings
    files = write_pngs(pipeline.inputs / "first", images, prefix="first")
    emulator.reset()
    started = time.monotonic()
    first = api.enqueue_many([str(p) for p in files], batch="first", settings=s)
    api.wait(first, timeout_s=600, settings=s)
    once_s = time.monotonic() - started
    started = time.monotonic()
    again = api.enqueue_many(_copies(files, pipeline.inputs / "again"), batch="again", settings=s)
    records = api.wait(again, timeout_s=600, settings=s)
    again_s = time.monotonic() - started
    _line("same images twice, other names", emulator, 2 * images, records, first + again,
          f"first batch {once_s:.1f} s, second {again_s:.1f} s")
    emulator.reset()
    forced = api.enqueue_many(_copies(files, pipeline.inputs / "forced"), batch="forced",
                              settings=s, force=True)
    _line("the second batch again with force (first batch not counted)", emulator, images,
          api.wait(forced, timeout_s=600, settings=s), forced, "")
    fresh = write_pngs(pipeline.inputs / "left", images, prefix="left")
    emulator.reset()
    left = api.enqueue_many([str(p) for p in fresh], batch="left", settings=s)
    right = api.enqueue_many(_copies(fresh, pipeline.inputs / "right"), batch="right",
                             settings=s)
    _line("two batches of new images at once", emulator, 2 * images,
          api.wait(left + right, timeout_s=600, settings=s), left + right, "")


def _line(what: str, emulator: EmulatorProcess, baseline: int, records: dict, ids: list[str],
          extra: str) -> None:
    calls = sum(emulator.paid_by_job()[i] for i in ids)
    states = Counter(str(r.state) for r in records.values())
    print(f"{what}: {calls} calls against {baseline} without the index: ratio "
          f"{calls / baseline:.3f}; {dict(states)} {extra}".rstrip())


def _copies(files: list[Path], folder: Path) -> list[str]:
    folder.mkdir(parents=True, exist_ok=True)
    copies = []
    for i, source in enumerate(files):
        copy = folder / f"copy{i:04d}.png"
        shutil.copyfile(source, copy)
        copies.append(str(copy))
    return copies


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.credits", description=__doc__)
    parser.add_argument("--images", type=int, default=100)
    parser.add_argument("--jobs", type=int, default=120)
    parser.add_argument("--daily", type=float, default=50)
    parser.add_argument("--workers", type=int, default=4)
    args = parser.parse_args(argv if argv is not None else [])
    run(args.images, args.jobs, args.daily, args.workers)


if __name__ == "__main__":
    import sys

    main(sys.argv[1:])
