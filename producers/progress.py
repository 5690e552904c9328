"""A live progress bar with counts by state while jobs run, shared by the CLI and the demo."""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from config import Settings
from producers import api

__all__ = ["STATES", "TERMINAL_STATES", "wait_with_progress"]

# The ledger's states in the order a job passes through them.
STATES = tuple(str(state) for state in api.JobState)
TERMINAL_STATES = frozenset(str(state) for state in api.TERMINAL_STATES)
_SLICE_S = 2.0  # how often `check` runs while waiting
_STYLE = {"SUCCEEDED": "green", "FAILED": "red", "NEEDS_RECONCILIATION": "yellow",
          "ON_HOLD": "magenta"}


def describe_counts(counts: Mapping[str, int]) -> str:
    """`SUCCEEDED 3  FAILED 1  SUBMITTED 2` with colours, zero counts left out."""
    parts = []
    for state in (*STATES, *sorted(set(counts) - set(STATES))):
        n = counts.get(state, 0)
        if n:
            style = _STYLE.get(state, "cyan")
            parts.append(f"[{style}]{state}[/] {n}")
    return "  ".join(parts) or "waiting"


def wait_with_progress(
    job_ids: Sequence[str],
    *,
    console: Console,
    settings: Settings | None = None,
    timeout_s: float | None = None,
    check: Callable[[], None] | None = None,
) -> dict[str, api.JobRecord]:
    """Wait until every job is terminal (or the timeout passes), drawing the progress.

    `check` runs every couple of seconds while waiting; the demo uses it to stop early, with
    the reason, when a process it started has died.
    """
    columns = (
        TextColumn("[bold]jobs"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        TextColumn("{task.description}"),
    )
    deadline = None if timeout_s is None else time.monotonic() + timeout_s
    with Progress(*columns, console=console, transient=False) as progress:
        bar = progress.add_task("waiting", total=len(job_ids))

        def on_progress(counts: Mapping[str, int]) -> None:
            done = sum(n for state, n in counts.items() if state in TERMINAL_STATES)
            progress.update(bar, completed=done, description=describe_counts(counts))

        while True:
            left = None if deadline is None else max(0.0, deadline - time.monotonic())
            slice_s = _SLICE_S if left is None else min(_SLICE_S, left)
            # api.wait reports the counts of what it returns, so the bar is never behind.
            records = api.wait(
                list(job_ids), timeout_s=slice_s, on_progress=on_progress, settings=settings
            )
            # api.wait returns every id (it raises for an unknown one).
            finished = all(r.settled for r in records.values())  # ON_HOLD waits for a person
            if finished or left == 0.0:
                return records
            if check is not None:
                check()
