"""How much of the rate limit the pipeline uses, and whether it ever goes over it.

The baseline is the limit itself, L calls per second, which the local API server enforces (and
counts every call against, whatever its outcome). Real Redis on a free port, 4 `celery -A tasks
worker -c 2` processes, tiny images. Rows: a plain backlog at L = 8, 20 and 50; every result
download taking 3 s (a distant CDN); 30 % of answers taking 2 s with CUTOUT_MAX_IN_FLIGHT=3.
For each row: all calls (submits and polls) while the backlog lasts / L, refused (throttled)
calls, the busiest one-second window / L, and the lateness of calls against their token's start
(p50/p99 of the limiter's last 500 samples) with the headroom it measured from them.

Usage: `python -m bench ratelimit` or
`python -m bench.ratelimit --seconds 30 --rows plain8,plain20,plain50,slow_downloads,slow_answers`
(each row's backlog is about `seconds` x L jobs; `--jobs N` fixes the count instead).
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import redis

from bench._stack import bench_stack
from producers import api
from tests.support.emulator_server import EmulatorProcess
from tests.support.redis_server import RedisServer
from tests.support.workers import pipeline_running, write_pngs

__all__ = ["main"]

WORKERS, CONCURRENCY = 4, 2


@dataclass(frozen=True)
class Row:
    name: str
    limit: float
    faults: dict[str, float] = field(default_factory=dict)
    settings: dict[str, Any] = field(default_factory=dict)


ROWS = {
    "plain8": Row("plain backlog, L=8", 8),
    "plain20": Row("plain backlog, L=20", 20),
    "plain50": Row("plain backlog, L=50", 50),
    "slow_downloads": Row("every download 3 s, L=8", 8, {"result_slow_s": 3.0}),
    "slow_answers": Row("30% of answers 2 s, in flight 3, L=8", 8,
                        {"slow_rate": 0.3, "slow_s": 2.0}, {"max_in_flight": 3}),
}


def run_row(row: Row, jobs: int, redis_server: RedisServer, emulator: EmulatorProcess,
            root: Path) -> dict[str, Any]:
    redis_server.client().flushall()
    emulator.reset()
    emulator.configure(rate_limit=row.limit, faults=row.faults)
    with pipeline_running(redis_server.url, emulator, root, count=WORKERS,
                          concurrency=CONCURRENCY, rate_limit=row.limit, poll_interval_s=3,
                          poll_max_interval_s=8, poll_deadline_s=600,
                          **row.settings) as pipeline:
        files = write_pngs(pipeline.inputs, jobs, prefix=f"{row.limit:g}-")
        ids = api.enqueue_many([str(p) for p in files], settings=pipeline.settings)
        records = api.wait(ids, timeout_s=jobs / row.limit * 4 + 120,
                           settings=pipeline.settings)
        lateness, headroom = _lateness(pipeline.settings.redis_url, emulator.public_key)
    succeeded = sum(r.state == "SUCCEEDED" for r in records.values())
    return {"row": row, "jobs": jobs, "succeeded": succeeded, **_usage(emulator, row.limit),
            "lateness": lateness, "headroom": headroom}


def _usage(emulator: EmulatorProcess, limit: float) -> dict[str, Any]:
    """All calls between the first and the last submit (the backlog) against L."""
    calls = emulator.calls()
    submits = sorted(c["t"] for c in calls if c["action"] == "RemoveBackground")
    first, last = submits[0], submits[-1]
    during = [c for c in calls if first <= c["t"] <= last]
    rate = (len(during) - 1) / (last - first) if last > first else 0.0
    stats = emulator.key_stats()
    refused = sum(o.get("throttled", 0) for o in stats["calls"].values())
    return {"usage": rate / limit, "refused": refused,
            "busiest": stats["max_calls_in_window"] / limit,
            "busiest_calls": stats["max_calls_in_window"]}


def _lateness(redis_url: str, public_key: str) -> tuple[list[float], float | None]:
    client = redis.Redis.from_url(redis_url, decode_responses=True)
    samples = [float(x) for x in client.lrange(f"cutout:limiter:{public_key}:lateness", 0, -1)]
    headroom = client.hget(f"cutout:limiter:{public_key}", "headroom")
    return samples, float(headroom) if headroom else None


def _percentile(samples: list[float], q: int) -> float:
    if len(samples) < 2:
        return samples[0] if samples else 0.0
    return statistics.quantiles(samples, n=100, method="inclusive")[q - 1]


def report(result: dict[str, Any]) -> None:
    row, late = result["row"], result["lateness"]
    headroom = f"{result['headroom']:.3f}" if result["headroom"] is not None else "-"
    print(f"{row.name:38} jobs {result['succeeded']}/{result['jobs']}  "
          f"calls/L {result['usage']:.3f}  refused {result['refused']}  "
          f"busiest/L {result['busiest']:.3f} ({result['busiest_calls']})  "
          f"lateness p50 {_percentile(late, 50) * 1000:.1f} ms "
          f"p99 {_percentile(late, 99) * 1000:.1f} ms  headroom {headroom}", flush=True)


def run(rows: list[str], seconds: float, jobs: int | None) -> None:
    with bench_stack(queue_s=0.5, run_s=1.0) as (root, redis_server, emulator):
        for name in rows:
            row = ROWS[name]
            started = time.monotonic()
            result = run_row(row, jobs or int(seconds * row.limit), redis_server, emulator,
                             root / name)
            report(result)
            print(f"  ({time.monotonic() - started:.0f} s)", flush=True)


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.ratelimit", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=float, default=30.0,
                        help="each row's backlog lasts about this long at L (default 30)")
    parser.add_argument("--jobs", type=int, default=None, help="a fixed job count per row")
    parser.add_argument("--rows", default=",".join(ROWS),
                        help=f"comma-separated, from {', '.join(ROWS)}")
    args = parser.parse_args(argv if argv is not None else [])
    rows = [r for r in args.rows.split(",") if r]
    unknown = sorted(set(rows) - set(ROWS))
    if unknown:
        parser.error(f"no such row: {', '.join(unknown)}")
    run(rows, args.seconds, args.jobs)


if __name__ == "__main__":
    import sys

    main(sys.argv[1:])
