"""`cutout status`: one job's record, or a batch's counts by state (and how many reused
another job's cutout instead of paying), with its failures."""

from __future__ import annotations

import json
import sys
from datetime import UTC, datetime
from typing import TYPE_CHECKING

import click
from rich.markup import escape

from producers.cli_output import EXIT_FAILED, console, errors, print_failures
from producers.startup import load_settings

if TYPE_CHECKING:
    from config import Settings

__all__ = ["status"]


@click.command()
@click.argument("job_id", required=False)
@click.option("--batch", metavar="NAME", help="Show a whole batch instead of one job.")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
def status(job_id: str | None, batch: str | None, as_json: bool) -> None:
    """A job's record, or a batch's counts by state and its failures."""
    settings = load_settings()
    if (job_id is None) == (batch is None):
        raise click.UsageError("give either JOB_ID or --batch NAME")
    if job_id is not None:
        _job_status(job_id, settings, as_json)
        return
    assert batch is not None
    from producers import api
    from producers.progress import STATES

    counts = {state: 0 for state in STATES}
    counts.update(api.batch_counts(batch, settings=settings))
    if as_json:
        click.echo(json.dumps(counts))
        return
    total = sum(counts.values())
    console.print(f"batch [bold]{escape(batch)}[/]: {total} job(s)", highlight=False)
    for state, n in counts.items():
        console.print(f"  {state:<22} {n}", highlight=False)
    jobs = api.batch_jobs(batch, settings=settings)
    reused = sum(1 for job in jobs if job.reused_from)
    if reused:
        console.print(f"  {'(reused, no call)':<22} {reused}", highlight=False)
    if counts.get("FAILED") or counts.get("NEEDS_RECONCILIATION"):
        print_failures(jobs, out=console)


def _job_status(job_id: str, settings: Settings, as_json: bool) -> None:
    from producers import api

    record = api.get_job(job_id, settings=settings)
    if record is None:
        errors.print(f"no job {job_id}", highlight=False, markup=False)
        sys.exit(EXIT_FAILED)
    data = record.to_dict()
    if as_json:
        click.echo(json.dumps(data, default=str))
        return
    attempts = data.pop("webhook_attempts")
    for name, value in data.items():
        if value in (None, "", [], {}):
            continue
        if name.endswith(("_at", "_until")) and isinstance(value, float):
            value = _when(value)
        console.print(f"{name:<14} {value}", highlight=False, markup=False)
    for attempt in attempts:  # one line per webhook delivery attempt
        outcome = attempt["error"] or f"HTTP {attempt['status']}"
        after = f", again at {_when(attempt['next_at'])}" if attempt.get("next_at") else ""
        console.print(f"{'webhook':<14} {_when(attempt['at'])} {attempt['event']} "
                      f"{attempt['webhook_id']} #{attempt['attempt']}: {outcome}: "
                      f"{attempt['outcome']}{after}", highlight=False, markup=False)


def _when(unix_s: float) -> str:
    return datetime.fromtimestamp(unix_s, UTC).isoformat(timespec="milliseconds")
