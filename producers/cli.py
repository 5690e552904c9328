"""The `cutout` command: enqueue images, follow a batch, find its cutouts, retry, report.

Exit codes: 0 done (every job waited for SUCCEEDED); 1 a job failed or an operation failed;
2 something was refused before queueing (nothing was queued), the command line is wrong,
or a CUTOUT_* setting is bad (one line naming it; see producers.startup).
"""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from pathlib import Path
from secrets import token_hex
from typing import TYPE_CHECKING, Any

import click
import redis
from kombu.exceptions import OperationalError
from rich.markup import escape

from config import Settings
from picpik.errors import CutoutError, InvalidInput
from producers.cli_costs import budget, confirm_or_exit, dry_run_and_exit, set_batch_budget
from producers.cli_output import (
    EXIT_FAILED,
    EXIT_REFUSED,
    console,
    errors,
    print_failures,
    refuse,
)
from producers.cli_reconcile import reconcile
from producers.cli_status import status
from producers.manifest import (
    Entry,
    group_indexes_by_options,
    option_from_text,
    read_references,
    validate_entries,
)
from producers.serve.command import serve
from producers.startup import BadSettings, load_settings

# producers.api, .progress and .report import tasks/, which builds the Celery app from the
# settings: each command imports them after load_settings(), so `--help` works whatever the
# environment and a bad setting is one line (BadSettings), not a traceback.
if TYPE_CHECKING:
    pass

__all__ = ["main"]

# Option (Python name) -> its flag, metavar and help. Values arrive as text and are converted,
# then validated by picpik.models.parse_options, so every refusal names the API field the same way.
OPTION_FLAGS = {
    "box": ("--box", "X1,Y1,X2,Y2", "The subject's box (x1 < x2, y1 < y2, inside the image)."),
    "remove_type": ("--remove-type", "General|Anime", "The kind of image."),
    "erode_size": ("--erode-size", "0..40", "Blurred pixels at the subject's edge."),
    "foreground_threshold": ("--foreground-threshold", "0..255", "Alpha matting threshold."),
    "background_threshold": ("--background-threshold", "0..255", "Alpha matting threshold."),
    "hair_optimization": ("--hair-optimization", "auto|on|off", "Refine hair edges."),
}


def option_flags(command: Callable[..., Any]) -> Callable[..., Any]:
    """Every RemoveBackground option as a flag named after its API parameter."""
    command = click.option(
        "--only-mask/--no-only-mask", default=None, help="Return only the mask."
    )(command)
    for name, (flag, metavar, text) in reversed(OPTION_FLAGS.items()):
        command = click.option(flag, name, metavar=metavar, default=None, help=text)(command)
    return command


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
def cli() -> None:
    """Remove the backgrounds of many images through the RemoveBackground API."""


cli.add_command(reconcile)
cli.add_command(status)
cli.add_command(budget)
cli.add_command(serve)


def main() -> None:
    """Entry point: the command group, with expected failures as one line on stderr."""
    try:
        # Not standalone, so that failures below reach this handler; click then returns
        # instead of raising for --help.
        cli(standalone_mode=False)
    except click.ClickException as exc:
        exc.show()
        sys.exit(exc.exit_code)
    except click.Abort:
        errors.print("aborted")
        sys.exit(130)
    except BadSettings as exc:
        errors.print(f"cutout: bad setting {exc}", highlight=False, markup=False)
        sys.exit(EXIT_REFUSED)
    except (CutoutError, redis.RedisError, OperationalError, OSError) as exc:
        errors.print(f"[red]error:[/] {escape(describe_failure(exc))}", highlight=False)
        sys.exit(EXIT_FAILED)


def describe_failure(exc: Exception) -> str:
    """One line on what went wrong, naming the setting to look at when a server is out of reach."""
    if isinstance(exc, redis.ConnectionError | redis.TimeoutError):
        return f"cannot reach Redis (CUTOUT_REDIS_URL): {exc}"
    if isinstance(exc, OperationalError):
        # kombu's wrapper of any broker connection error, raised while publishing: the ledger
        # already holds the jobs, and enqueueing them again would make duplicates.
        return (f"cannot reach the broker (CUTOUT_BROKER_URL, by default CUTOUT_REDIS_URL): "
                f"{str(exc).rstrip('.')}; the jobs recorded so far stay ACCEPTED and the "
                "workers' sweeper publishes them later (do not enqueue them again, unless "
                "with the same --idempotency-key)")
    return str(exc)


# --- enqueue ---


@cli.command()
@click.argument("references", nargs=-1, metavar="[PATH_OR_URL]...")
@click.option("--manifest", "manifests", multiple=True, metavar="FILE",
              type=click.Path(path_type=Path),
              help="A .txt, .csv or .jsonl list of references (repeatable).")
@click.option("--batch", metavar="NAME", help="The batch name (default: a new one, printed).")
@click.option("--out", metavar="DIR", type=click.Path(path_type=Path, file_okay=False),
              help="Where the cutouts go (default: the workers' CUTOUT_OUTPUT_DIR).")
@click.option("--wait", is_flag=True, help="Show progress until every job is finished.")
@click.option("--timeout-s", metavar="S", type=float, default=None,
              help="With --wait: stop waiting after S seconds (exit 1 if jobs are left).")
@click.option("--idempotency-key", metavar="K", default=None,
              help="Run again with the same K (and the same images and flags) to queue "
                   "nothing new: the job ids are derived from K.")
@click.option("--webhook", metavar="URL", default=None,
              help="POST each job's end (signed, Standard Webhooks) to this http(s) URL.")
@click.option("--force", is_flag=True,
              help="Pay for every image, even one cut out before with the same options.")
@click.option("--budget", "credits", metavar="N", type=click.FloatRange(min=0), default=None,
              help="The batch's credit budget: jobs past it wait ON_HOLD (see cutout budget).")
@click.option("--dry-run", is_flag=True, help="Count jobs, reuses and credits; queue nothing.")
@click.option("--yes", is_flag=True, help="Do not ask before a large batch.")
@option_flags
def enqueue(
    references: tuple[str, ...],
    manifests: tuple[Path, ...],
    batch: str | None,
    out: Path | None,
    wait: bool,
    timeout_s: float | None,
    idempotency_key: str | None,
    webhook: str | None,
    force: bool,
    credits: float | None,
    dry_run: bool,
    yes: bool,
    **flags: Any,
) -> None:
    """Queue images (files, folders, http/https URLs, manifests) for background removal."""
    settings = load_settings()
    entries = _entries_or_exit(references, manifests)
    jobs = _validated_or_exit(entries, flags)
    if batch is not None and (not batch or ":" in batch):
        refuse([f"field batch: must be a non-empty name without ':' (got {batch!r})"])
    if webhook is not None:
        _check_webhook_or_exit(webhook)
    if dry_run:
        dry_run_and_exit(jobs, settings)
    confirm_or_exit(len(jobs), yes, settings)
    batch = batch or f"batch-{datetime.now(UTC):%Y%m%d-%H%M%S}-{token_hex(2)}"
    if credits is not None:
        set_batch_budget(batch, credits, settings)
    # Absolute, because workers run elsewhere: a relative path would be their own cwd's.
    out = out.resolve() if out is not None else None
    job_ids = _enqueue_groups(jobs, batch=batch, out=out, settings=settings,
                              idempotency_key=idempotency_key, webhook=webhook, force=force)
    console.print(f"queued {len(job_ids)} job(s) in batch [bold]{escape(batch)}[/]",
                  highlight=False)
    if wait:
        _wait_and_exit(job_ids, batch=batch, settings=settings, timeout_s=timeout_s)


def _entries_or_exit(references: Sequence[str], manifests: Sequence[Path]) -> list[Entry]:
    if not references and not manifests:
        raise click.UsageError("give at least one PATH_OR_URL or --manifest FILE")
    try:
        entries = read_references(references, manifests)
    except InvalidInput as exc:
        refuse([f"field {exc.field}: {exc.message}"])
    if not entries:
        refuse(["no images found in what was given"])
    return entries


def _validated_or_exit(
    entries: Sequence[Entry], flags: dict[str, Any]
) -> list[tuple[str, dict[str, Any]]]:
    """Each entry's options (its own over the flags), validated; any refusal exits, unqueued."""
    defaults = {
        name: value if name == "only_mask" else option_from_text(name, value)
        for name, value in flags.items()
        if value is not None
    }
    jobs, refusals = validate_entries(entries, defaults)
    if refusals:
        refuse(refusals)
    return jobs


def _check_webhook_or_exit(url: str) -> None:
    from tasks.outputs.webhooks import check_webhook_url

    try:
        check_webhook_url(url)
    except InvalidInput as exc:
        refuse([f"field {exc.field}: {exc.message}"])


def _enqueue_groups(
    jobs: Sequence[tuple[str, dict[str, Any]]], *, batch: str, out: Path | None,
    settings: Settings, idempotency_key: str | None = None, webhook: str | None = None,
    force: bool = False,
) -> list[str]:
    """Publish jobs in bulk, one enqueue_many call per distinct set of options. With a key,
    each job's id is derived from the key and its position (api.derive_job_ids), as the
    Python API derives them, so a repeat queues nothing new."""
    from producers import api

    if idempotency_key is not None and not idempotency_key.strip():
        refuse(["field --idempotency-key: must not be empty"])
    derived = api.derive_job_ids(idempotency_key, len(jobs)) if idempotency_key else None
    job_ids: list[str] = [""] * len(jobs)
    for options, indexes in group_indexes_by_options(jobs):
        refs = [jobs[i][0] for i in indexes]
        given = [derived[i] for i in indexes] if derived else None
        try:
            ids = api.enqueue_many(refs, batch=batch, output_dir=str(out) if out else None,
                                   job_ids=given, settings=settings, webhook_url=webhook,
                                   force=force,
                                   **options)
        except InvalidInput as exc:
            if exc.field != "job_ids":
                raise
            refuse([f"field --idempotency-key: {exc.message}"])
        for i, job_id in zip(indexes, ids, strict=True):
            job_ids[i] = job_id
    return job_ids


def _wait_and_exit(
    job_ids: Sequence[str], *, batch: str, settings: Settings, timeout_s: float | None
) -> None:
    from producers.progress import TERMINAL_STATES, wait_with_progress

    records = wait_with_progress(job_ids, console=console, settings=settings, timeout_s=timeout_s)
    print_failures(list(records.values()))
    states = [str(r.state) for r in records.values()]
    unfinished = len(job_ids) - sum(s in TERMINAL_STATES for s in states)
    held = states.count("ON_HOLD")
    if held:
        errors.print(f"{held} job(s) ON_HOLD: over a credit budget (see: cutout budget); they "
                     "go on by themselves once a budget has room", highlight=False, markup=False)
    if unfinished - held:
        errors.print(f"{unfinished - held} job(s) not finished yet; they keep running "
                     f"(follow them with: cutout status --batch {batch})",
                     highlight=False, markup=False)
    if unfinished or any(s != "SUCCEEDED" for s in states):
        sys.exit(EXIT_FAILED)


# --- status, results, retry, report, emulator ---


BATCH = click.option("--batch", metavar="NAME", required=True, help="The batch name.")


@cli.command()
@BATCH
def results(batch: str) -> None:
    """Where each job's cutouts are: `reference -> path, path` (or its state)."""
    settings = load_settings()
    from producers import api

    records = api.batch_jobs(batch, settings=settings)
    if not records:
        errors.print(f"batch {batch} has no jobs", highlight=False, markup=False)
        sys.exit(EXIT_FAILED)
    for record in records:
        state = str(record.state)
        where = ", ".join(record.result_paths) if state == "SUCCEEDED" else f"({state})"
        click.echo(f"{record.reference} -> {where}")


@cli.command()
@BATCH
@click.option("--wait", is_flag=True, help="Show progress until the retried jobs finish.")
@click.option("--timeout-s", metavar="S", type=float, default=None,
              help="With --wait: stop waiting after S seconds (exit 1 if jobs are left).")
def retry(batch: str, wait: bool, timeout_s: float | None) -> None:
    """Queue a batch's failed jobs again."""
    settings = load_settings()
    from producers import api

    job_ids = api.retry_failed(batch, settings=settings)
    console.print(f"re-queued {len(job_ids)} failed job(s) of batch {batch}", highlight=False,
                  markup=False)
    if wait and job_ids:
        _wait_and_exit(job_ids, batch=batch, settings=settings, timeout_s=timeout_s)


@cli.command()
@BATCH
@click.option("--out", metavar="FILE", type=click.Path(path_type=Path, dir_okay=False),
              help="The HTML file (default: report.html in the batch's --out folder, else "
                   "CUTOUT_OUTPUT_DIR/report-NAME.html).")
def report(batch: str, out: Path | None) -> None:
    """Write the batch's before/after page: one self-contained HTML file."""
    settings = load_settings()
    from producers.report import write_report

    path = write_report(batch, out, settings=settings)
    click.echo(str(path))


@cli.command(
    context_settings={"ignore_unknown_options": True, "allow_extra_args": True},
    add_help_option=False,
)
@click.argument("args", nargs=-1, type=click.UNPROCESSED)
def emulator(args: tuple[str, ...]) -> None:
    """Run the local API server (`python -m emulator`); every flag is passed through."""
    try:
        code = subprocess.call([sys.executable, "-m", "emulator", *args])
    except KeyboardInterrupt:
        code = 130
    sys.exit(code)
