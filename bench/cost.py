"""The pipeline's own CPU cost, against bare Celery measured in the same run (issue 10).

1. Worker CPU per job: N tiny images through the whole pipeline (submit, persist, poll,
   collect), 2 workers x -c 2, no effective rate limit, from the worker processes' own CPU
   counters (main process + pool processes, before and after), against N bare no-op tasks
   (bench/_noop.py: acks_late, stored result, task events on) on the same kind of workers.
2. `api.enqueue_many` of M references against Celery publishing M messages over one producer.
3. Latency from enqueue to the TaskUID persisted (the job's `submitted_at`), jobs enqueued one
   at a time with the limiter idle, against the local server's own answer time (`took_s` in
   its call log): p50 and p99.

Then a profile of where a pool process's CPU goes (bench/_profiled.py: cProfile of every
thread, CPU time), by stage and by module. Usage: `python -m bench cost` or
`python -m bench.cost --jobs 300 --enqueue 20000 --latency-jobs 60`.
"""

from __future__ import annotations

import argparse
import statistics
import time
import uuid
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import redis

from bench import _cost_profile as prof
from bench._stack import bench_stack
from config import Settings
from producers import api
from tasks.celery_app import create_app
from tests.support.emulator_server import EmulatorProcess
from tests.support.redis_server import RedisServer
from tests.support.workers import (
    WorkerProcess,
    pipeline_overrides,
    pipeline_running,
    pipeline_settings,
    running_workers,
    settings_env,
    write_pngs,
)

__all__ = ["main"]

WORKERS, CONCURRENCY = 2, 2
NO_LIMIT = {"rate_limit": 100_000, "max_in_flight": 64}
WARM_UP_JOBS = 8
NOOP = "bench.noop"  # bench/_noop.py (not imported: it sets up its own Celery app)
NOOP_CHAINED = "bench.noop_chained"  # run after NOOP when linked to it


def _pids(workers: list[WorkerProcess]) -> list[int]:
    return [w.process.pid for w in workers if w.process is not None]


def pipeline_cpu(rds: RedisServer, emulator: EmulatorProcess, root: Path, jobs: int,
                 latency_jobs: int) -> tuple[float, float, list[float], list[float]]:
    """CPU ms per job (main processes, pool processes), then the latencies and answer times
    of jobs enqueued one at a time."""
    with pipeline_running(rds.url, emulator, root, count=WORKERS, concurrency=CONCURRENCY,
                          **NO_LIMIT) as pipeline:
        files = [str(p) for p in write_pngs(pipeline.inputs, jobs + WARM_UP_JOBS)]
        _run_jobs(files[:WARM_UP_JOBS], pipeline.settings)  # every process warm
        before = prof.worker_cpu_s(_pids(pipeline.workers))
        started = time.perf_counter()
        _run_jobs(files[WARM_UP_JOBS:], pipeline.settings)
        took = time.perf_counter() - started
        after = prof.worker_cpu_s(_pids(pipeline.workers))
        print(f"  {jobs} jobs through the pipeline in {took:.1f} s ({jobs / took:.0f} jobs/s)")
        latencies, answers = _latencies(pipeline.settings, emulator, pipeline.inputs,
                                        latency_jobs)
    main_ms, pool_ms = ((a - b) * 1000 / jobs for a, b in zip(after, before, strict=True))
    return main_ms, pool_ms, latencies, answers


def _run_jobs(files: list[str], settings: Settings) -> None:
    ids = api.enqueue_many(files, settings=settings)
    records = api.wait(ids, timeout_s=120 + len(ids) / 5, settings=settings)
    bad = [r for r in records.values() if r.state is not api.JobState.SUCCEEDED]
    if bad:
        raise RuntimeError(f"{len(bad)} jobs did not succeed, e.g. {bad[0]}")


def _latencies(settings: Settings, emulator: EmulatorProcess, inputs: Path,
               count: int) -> tuple[list[float], list[float]]:
    """Seconds from each enqueue to its TaskUID persisted; the server's answer times."""
    files = write_pngs(inputs / "latency", count)
    enqueued: dict[str, float] = {}
    for path in files:
        started = time.time()
        enqueued[api.enqueue(str(path), settings=settings)] = started
        time.sleep(0.1)  # the previous job is through: the limiter and workers are idle
    records = api.wait(list(enqueued), timeout_s=120, settings=settings)
    took = {c["request_uuid"]: c["took_s"] for c in emulator.calls(action="RemoveBackground")
            if c["request_uuid"] in enqueued}
    parts = [(r.call_started_at - enqueued[j], r.submitted_at - r.call_started_at)
             for j, r in records.items() if r.call_started_at and r.submitted_at]
    if parts:
        print(f"  medians: enqueue -> call started "
              f"{statistics.median(p[0] for p in parts) * 1000:.1f}"
              f" ms, call started -> TaskUID persisted "
              f"{statistics.median(p[1] for p in parts) * 1000:.1f} ms")
    return ([records[j].submitted_at - t for j, t in enqueued.items()  # type: ignore[operator]
             if records[j].submitted_at], list(took.values()))


def noop_cpu(rds: RedisServer, emulator: EmulatorProcess, root: Path, tasks: int,
             chained: bool = False) -> tuple[float, float]:
    """CPU ms per bare no-op task (main processes, pool processes); `chained`: per pair of
    no-op tasks, the second linked to the first (the submit -> persist shape)."""
    values = pipeline_overrides(rds.url, emulator.base_url, emulator.public_key,
                                emulator.private_key, root, **NO_LIMIT)
    settings = pipeline_settings(values)
    app = create_app(settings, main="bench-noop-producer", current=False)
    results = redis.Redis.from_url(settings.result_backend)
    with running_workers(settings_env(values), root, WORKERS, CONCURRENCY,
                         app="bench._noop") as workers:
        _noops(app, results, WARM_UP_JOBS, chained)
        before = prof.worker_cpu_s(_pids(workers))
        _noops(app, results, tasks, chained)
        after = prof.worker_cpu_s(_pids(workers))
    main_ms, pool_ms = ((a - b) * 1000 / tasks for a, b in zip(after, before, strict=True))
    return main_ms, pool_ms


def _noops(app: Any, results: redis.Redis, count: int, chained: bool = False) -> None:
    ids = _publish(app, [f"in/p{i:05d}.png" for i in range(count)], chained)
    deadline = time.monotonic() + 120 + count / 20
    while time.monotonic() < deadline:
        pipe = results.pipeline(transaction=False)
        for task_id in ids:
            pipe.exists(f"celery-task-meta-{task_id}")
        if all(pipe.execute()):
            return
        time.sleep(0.25)
    raise RuntimeError("the no-op tasks did not finish in time")


def _publish(app: Any, refs: list[str], chained: bool = False) -> list[str]:
    """Bare Celery: one message per reference over one producer (with `chained`, each names a
    second no-op as its link); the ids of the tasks that run last."""
    ids = [str(uuid.uuid4()) for _ in refs]
    with app.producer_or_acquire() as producer:
        for task_id, ref in zip(ids, refs, strict=True):
            # The last task's id is known up front: the link's, or the single task's.
            last = ({"link": app.signature(NOOP_CHAINED).set(task_id=task_id, queue="submit")}
                    if chained else {"task_id": task_id})
            app.send_task(NOOP, kwargs={"reference": ref}, queue="submit", producer=producer,
                          **last)
    return ids


def enqueue_rates(rds: RedisServer, emulator: EmulatorProcess, root: Path, count: int
                  ) -> tuple[float, float]:
    """References per second: api.enqueue_many, bare publish (best of two rounds each)."""
    settings = pipeline_settings(pipeline_overrides(
        rds.url, emulator.base_url, emulator.public_key, emulator.private_key, root))
    app = create_app(settings, main="bench-publisher", current=False)
    refs = [f"in/p{i:05d}.png" for i in range(count)]
    client = rds.client()
    ours, bare = [], []
    for _ in range(2):
        ours.append(_timed(lambda: api.enqueue_many(refs, settings=settings), client))
        bare.append(_timed(lambda: _publish(app, refs), client))
    return count / min(ours), count / min(bare)


def _timed(action: Callable[[], object], client: redis.Redis) -> float:
    started = time.perf_counter()
    action()
    took = time.perf_counter() - started
    client.flushall()
    return took


def profile(rds: RedisServer, emulator: EmulatorProcess, root: Path, jobs: int,
            out: Path | None = None) -> None:
    """The pipeline's workers under cProfile: shares by stage and by module (the stats files
    are kept in `out` when given, for `python -m pstats`)."""
    out = out or root / "profiles"
    out.mkdir(parents=True, exist_ok=True)
    with pipeline_running(rds.url, emulator, root, count=WORKERS, concurrency=CONCURRENCY,
                          app="bench._profiled", env={"TMPDIR": str(out)},
                          **NO_LIMIT) as pipeline:
        files = [str(p) for p in write_pngs(pipeline.inputs, jobs)]
        _run_jobs(files, pipeline.settings)
    for role, what in (("pool", "pool processes"),
                       ("main", "main processes (consumer, collectors, outbox, upkeep)")):
        _print_profile(prof.load(out.glob(f"{prof.PROFILE_PREFIX}{role}-*.prof")), what, jobs)


def _print_profile(stats: Any, what: str, jobs: int) -> None:
    if stats is None:
        print(f"profile of the {what}: none written")
        return
    total = prof.total_s(stats)
    print(f"profile of the {what} ({jobs} jobs, cProfile, CPU time; "
          f"{total * 1000 / jobs:.1f} ms per job under the profiler):")
    print("  by stage (cumulative; stages may contain one another):")
    for stage, seconds in prof.stage_shares(stats):
        print(f"    {stage:52s} {seconds / total:6.1%}  {seconds * 1000 / jobs:6.2f} ms/job")
    print("  by module (self time):")
    for group, seconds in prof.module_shares(stats):
        print(f"    {group:52s} {seconds / total:6.1%}  {seconds * 1000 / jobs:6.2f} ms/job")


def _pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def report_latency(latencies: list[float], answers: list[float]) -> None:
    if not latencies or not answers:
        print("latency: no job measured")
        return
    for name, q, allowed in (("p50", 0.5, 0.020), ("p99", 0.99, 0.100)):
        ours, answer = _pct(latencies, q), _pct(answers, q)
        print(f"enqueue -> TaskUID persisted {name}: {ours * 1000:.1f} ms against the server's "
              f"answer {answer * 1000:.1f} ms: +{(ours - answer) * 1000:.1f} ms "
              f"(target +{allowed * 1000:.0f} ms; {len(latencies)} jobs, median answer "
              f"{statistics.median(answers) * 1000:.1f} ms)")


def run(jobs: int, enqueue: int, latency_jobs: int, profile_jobs: int, rows: str,
        profile_dir: Path | None = None, render: str = "plain") -> None:
    # With matting, the local server's rendering (about 80 ms of CPU a tiny result) takes most
    # of a 2-core machine and paces the run at ~20 jobs/s: the API would be the limit, which
    # the row excludes ("no effective limit").
    with bench_stack(queue_s=0.02, run_s=0.05, server_args=["--render", render]) as (
            root, rds, emulator):
        if "enqueue" in rows:
            _enqueue_row(rds, emulator, root, enqueue)
        if "cpu" in rows:
            _cpu_rows(rds, emulator, root, jobs, latency_jobs)
        if profile_jobs and "profile" in rows:
            profile(rds, emulator, root / "profile", profile_jobs, profile_dir)


def _enqueue_row(rds: RedisServer, emulator: EmulatorProcess, root: Path, enqueue: int) -> None:
    ours, bare = enqueue_rates(rds, emulator, root / "enqueue", enqueue)
    print(f"api.enqueue_many of {enqueue} references: {ours:.0f}/s against a bare "
          f"publish over one producer {bare:.0f}/s: ratio {ours / bare:.2f} "
          "(target >= 0.8)", flush=True)


def _cpu_rows(rds: RedisServer, emulator: EmulatorProcess, root: Path, jobs: int,
      latency_jobs: int) -> None:
    main_ms, pool_ms, latencies, answers = pipeline_cpu(rds, emulator, root / "pipe",
                                                        jobs, latency_jobs)
    rds.client().flushall()
    noop_main, noop_pool = noop_cpu(rds, emulator, root / "noop", jobs)
    rds.client().flushall()
    pair_main, pair_pool = noop_cpu(rds, emulator, root / "pair", jobs, chained=True)
    rds.client().flushall()
    ours, noop = main_ms + pool_ms, noop_main + noop_pool
    print(f"worker CPU per job: {ours:.1f} ms (main {main_ms:.1f}, pool "
          f"{pool_ms:.1f}) against a bare no-op task {noop:.1f} ms "
          f"(main {noop_main:.1f}, pool {noop_pool:.1f}): ratio {_ratio(ours, noop)} "
          f"(target <= 3.5; {jobs} jobs, {WORKERS} workers x -c {CONCURRENCY})",
          flush=True)
    pair = pair_main + pair_pool
    print(f"  Celery's floor for the submit -> persist shape, two chained no-op tasks: "
          f"{pair:.1f} ms (main {pair_main:.1f}, pool {pair_pool:.1f}): "
          f"{_ratio(pair, noop)}x the no-op; the pipeline is {_ratio(ours, pair)}x that",
          flush=True)
    report_latency(latencies, answers)


def _ratio(ours: float, baseline: float) -> str:
    # A few tasks may take less CPU than the counters can show (10 ms ticks): no ratio then.
    return f"{ours / baseline:.2f}" if baseline > 0 else "n/a (baseline below the counters)"


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.cost", description=__doc__)
    parser.add_argument("--jobs", type=int, default=300, help="jobs (and no-op tasks)")
    parser.add_argument("--enqueue", type=int, default=5000,
                        help="references for the enqueue row (the issue's figure: 20000)")
    parser.add_argument("--latency-jobs", type=int, default=50)
    parser.add_argument("--profile-jobs", type=int, default=200, help="0: no profile")
    parser.add_argument("--rows", default="enqueue,cpu,profile",
                        help="which parts to run (default all: enqueue,cpu,profile; cpu "
                        "includes the latency row)")
    parser.add_argument("--profile-dir", type=Path, help="keep the cProfile stats files here")
    parser.add_argument("--render", choices=("plain", "matting"), default="plain",
                        help="the local server's results: plain (default; no matting, so the "
                        "server neither limits the run nor takes the workers' CPU) or matting")
    args = parser.parse_args(argv if argv is not None else [])
    run(args.jobs, args.enqueue, args.latency_jobs, args.profile_jobs, args.rows,
        args.profile_dir, args.render)


if __name__ == "__main__":
    import sys

    main(sys.argv[1:])
