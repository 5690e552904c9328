"""`python -m bench cost` works: a smoke run with tiny counts (its figures depend on the load of
the machine, so nothing here looks at them; they are for `python -m bench cost`)."""

from __future__ import annotations

import pytest

from bench.cost import main


def test_bench_cost_prints_every_row_and_both_profiles(capsys: pytest.CaptureFixture[str]
                                                       ) -> None:
    main(["--jobs", "4", "--enqueue", "30", "--latency-jobs", "2", "--profile-jobs", "4"])
    out = capsys.readouterr().out
    for row in ("api.enqueue_many of 30 references", "worker CPU per job",
                "two chained no-op tasks", "jobs through the pipeline in",
                "enqueue -> TaskUID persisted p50", "enqueue -> TaskUID persisted p99",
                "profile of the pool processes", "profile of the main processes",
                "Redis commands, all"):
        assert row in out
    assert "none written" not in out
