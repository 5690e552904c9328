"""What every `cutout` command prints with: the two consoles, the exit codes, refusals and
failed jobs, in one place so that each command module prints them the same way."""

from __future__ import annotations

import sys
from collections.abc import Sequence
from typing import TYPE_CHECKING, NoReturn

from rich.console import Console
from rich.markup import escape

if TYPE_CHECKING:
    from tasks.store.records import JobRecord

__all__ = ["EXIT_FAILED", "EXIT_REFUSED", "console", "errors", "print_failures", "refuse"]

EXIT_FAILED = 1
EXIT_REFUSED = 2

# soft_wrap: a line stays one line when piped, so scripts can grep it.
console = Console(soft_wrap=True)
errors = Console(stderr=True, soft_wrap=True)


def refuse(reasons: Sequence[str], *, queued_nothing: bool = True) -> NoReturn:
    """Each reason as `refused: ...` on stderr, then exit 2."""
    for reason in reasons:
        errors.print(f"[red]refused:[/] {escape(reason)}", highlight=False)
    if queued_nothing:
        errors.print("nothing was queued", highlight=False)
    sys.exit(EXIT_REFUSED)


def print_failures(records: Sequence[JobRecord], out: Console = errors) -> None:
    """Each failed job: state, reference, stage/code/field, reason."""
    for record in records:
        state = str(record.state)
        if state in ("FAILED", "NEEDS_RECONCILIATION"):
            parts = (record.error_stage, record.error_code, record.error_field)
            where = "/".join(str(x) for x in parts if x)
            detail = (f"{record.reference}: {where or 'unknown'}: "
                      f"{record.error_message or 'no reason recorded'}")
            out.print(f"[red]{state}[/] {escape(detail)}", highlight=False)
