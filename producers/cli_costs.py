"""Cost controls on the command line: `cutout budget` (spending, and changing a budget, after
which held jobs go on by themselves), and enqueue's --dry-run, --budget and confirmation."""

from __future__ import annotations

import sys
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

import click
from rich.markup import escape

from picpik.errors import CutoutError
from producers.cli_output import EXIT_REFUSED, console, errors, refuse
from producers.startup import load_settings

if TYPE_CHECKING:
    from config import Settings
    from tasks.store.budgets import Spending

__all__ = ["budget", "confirm_or_exit", "dry_run_and_exit", "set_batch_budget"]


@click.command()
@click.option("--daily", metavar="N", type=click.FloatRange(min=0), default=None,
              help="Credits the PublicKey may spend per UTC day (0 lifts the limit).")
@click.option("--batch", metavar="NAME", default=None, help="Show or change this batch's budget.")
@click.option("--credits", metavar="N", type=click.FloatRange(min=0), default=None,
              help="With --batch: the batch's budget in credits (0 lifts it).")
def budget(daily: float | None, batch: str | None, credits: float | None) -> None:
    """Credits spent today and per batch, against their budgets; --daily N or --batch NAME
    --credits N change a budget, and jobs ON_HOLD then go on by themselves."""
    from producers import api
    from tasks.stages.budget import resume_held
    from tasks.store.budgets import HELD_JOBS, Budgets
    from tasks.store.ledger import Ledger

    settings = load_settings()
    if credits is not None and batch is None:
        raise click.UsageError("--credits needs --batch NAME")
    ledger = Ledger.from_url(settings.redis_url)
    budgets = Budgets(ledger.redis, settings.public_key, settings.daily_credit_budget)
    if daily is not None:
        budgets.set_daily(daily)
    if batch is not None and credits is not None:
        budgets.set_batch(batch, credits)
    if daily is not None or credits is not None:
        resumed = resume_held(ledger, budgets, settings.credits_per_call)
        api.publish(settings, resumed)
        console.print(f"{len(resumed)} held job(s) go on", highlight=False)
    _show(f"today ({datetime.now(UTC):%Y-%m-%d} UTC)", budgets.today())
    for name in [batch] if batch else budgets.batches():
        _show(f"batch {name}", budgets.batch(name))
    console.print(f"ON_HOLD: {ledger.redis.zcard(HELD_JOBS)} job(s)", highlight=False)


def _show(what: str, spending: Spending) -> None:
    limit = f"{spending.limit:g}" if spending.limit > 0 else "no limit"
    console.print(f"{escape(what)}: spent {spending.spent:g}, reserved {spending.reserved:g}, "
                  f"budget {limit}", highlight=False)


def set_batch_budget(batch: str, credits: float, settings: Settings) -> None:
    """`cutout enqueue --budget N`: the batch's budget, set before its jobs are queued."""
    from tasks.store.budgets import Budgets
    from tasks.store.ledger import Ledger

    ledger = Ledger.from_url(settings.redis_url)
    Budgets(ledger.redis, settings.public_key, settings.daily_credit_budget).set_batch(
        batch, credits)


def confirm_or_exit(count: int, yes: bool, settings: Settings) -> None:
    """More jobs than CUTOUT_CONFIRM_ABOVE: ask on a terminal; without one, --yes is needed."""
    limit = settings.confirm_above
    if yes or limit <= 0 or count <= limit:
        return
    question = (f"queue {count} jobs (more than CUTOUT_CONFIRM_ABOVE={limit}), up to about "
                f"{count * settings.credits_per_call:g} credits?")
    if not sys.stdin.isatty():
        refuse([f"{question} No terminal to ask: pass --yes (or try --dry-run first)"])
    if not click.confirm(question, default=False):
        errors.print("nothing was queued", highlight=False, markup=False)
        sys.exit(EXIT_REFUSED)


def dry_run_and_exit(jobs: Sequence[tuple[str, dict[str, Any]]], settings: Settings) -> None:
    """Read each image as a worker would and look it up in the same-cutout index: how many
    jobs, how many would reuse a cutout, what the rest would cost. No job, no call."""
    from picpik.models import parse_options
    from tasks.inputs.fetch import fetch
    from tasks.store.dedupe import DedupeIndex, content_key
    from tasks.store.ledger import Ledger

    ledger = Ledger.from_url(settings.redis_url)
    index = DedupeIndex(ledger.redis, settings.dedupe_ttl_s)
    seen: set[str] = set()
    reused = unreadable = 0
    for reference, options in jobs:
        try:
            key = content_key(fetch(reference, settings), parse_options(options).to_params())
        except CutoutError:
            unreadable += 1
            continue
        owner = index.peek(key)
        owner_record = ledger.get(owner) if owner else None
        if key in seen or (owner_record and str(owner_record.state) not in (
                "FAILED", "NEEDS_RECONCILIATION")):
            reused += 1
        seen.add(key)
    paid = len(jobs) - reused - unreadable
    console.print(f"dry run: {len(jobs)} job(s); {reused} would reuse a cutout made before "
                  f"(no call); {paid} would be paid, about "
                  f"{paid * settings.credits_per_call:g} credit(s); {unreadable} could not "
                  "be read (they would fail, unpaid). Nothing was queued.", highlight=False)
    sys.exit(0)
