"""`cutout reconcile`: the jobs left NEEDS_RECONCILIATION beside what the API says now, and the
two ways out: attach a TaskUID found on the API side, or submit the job again."""

from __future__ import annotations

import json
import sys
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

import click
from rich.markup import escape

from picpik.errors import InvalidInput
from producers.cli_output import console, refuse
from producers.startup import load_settings

if TYPE_CHECKING:
    from producers.reconcile import ApiView
    from tasks.stages.runtime import Runtime
    from tasks.store.records import JobRecord

__all__ = ["reconcile"]

NO_KEY = ("cutout reconcile asks the API (ListRunningTasks, ListTasksDetails), and those calls "
          "are signed: set CUTOUT_PRIVATE_KEY or CUTOUT_PRIVATE_KEY_FILE, and CUTOUT_PUBLIC_KEY")


@click.command()
@click.option("--batch", metavar="NAME", help="Only the jobs of this batch (default: all).")
@click.option("--task", "task_uids", multiple=True, metavar="TASK_UID",
              help="Also ask the API about this TaskUID (repeatable).")
@click.option("--attach", nargs=2, metavar="JOB TASK_UID", default=None,
              help="Record TASK_UID as JOB's task: the job is then polled and collected.")
@click.option("--resubmit", metavar="JOB", default=None,
              help="Submit JOB again (paid again if the API did take its first call).")
@click.option("--yes", is_flag=True, help="With --resubmit: do not ask for confirmation.")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
def reconcile(batch: str | None, task_uids: tuple[str, ...], attach: tuple[str, str] | None,
              resubmit: str | None, yes: bool, as_json: bool) -> None:
    """Jobs whose call the API may have taken (NEEDS_RECONCILIATION), with what the API says
    now; --attach JOB TASK_UID or --resubmit JOB settles one."""
    settings = load_settings()
    if attach and resubmit:
        raise click.UsageError("give --attach or --resubmit, not both")
    from tasks.stages.runtime import Runtime

    try:
        if resubmit:
            _resubmit(Runtime.build(settings), resubmit, yes)
            return
        if settings.private_key is None or not settings.public_key:
            refuse([NO_KEY], queued_nothing=False)
        rt = Runtime.build(settings)
        if attach:
            _attach(rt, *attach)
            return
        _list(rt, batch, task_uids, as_json)
    except InvalidInput as exc:
        refuse([f"field {exc.field}: {exc.message}"], queued_nothing=False)


def _list(rt: Runtime, batch: str | None, task_uids: tuple[str, ...], as_json: bool) -> None:
    from producers.reconcile import api_view, flagged_jobs

    jobs = flagged_jobs(rt, batch)
    view = api_view(rt, task_uids)
    if as_json:
        click.echo(json.dumps(_as_json(jobs, view), default=str))
        return
    where = f" in batch {batch}" if batch else ""
    console.print(f"{len(jobs)} job(s){where} need reconciliation", highlight=False,
                  markup=False)
    for record in jobs:
        console.print(f"  {record.job_id}  {record.reference}", highlight=False, markup=False)
        console.print(f"      flagged {_when(record.finished_at)}: "
                      f"{record.error_message or 'no reason recorded'}", highlight=False,
                      markup=False)
    console.print(f"the API now: {len(view.running)} task(s) running (ListRunningTasks), "
                  f"{len(view.unrecorded)} of them recorded on no job here", highlight=False,
                  markup=False)
    for detail in [*view.unrecorded, *view.asked]:
        console.print(f"  {detail.task_uid}  {detail.status or '?'}  ImgList "
                      f"{len(detail.img_list)}  ErrorCode {detail.error_code}",
                      highlight=False, markup=False)
    if jobs:
        console.print("settle one: cutout reconcile --attach JOB TASK_UID  |  "
                      "cutout reconcile --resubmit JOB", highlight=False, markup=False)


def _attach(rt: Runtime, job_id: str, task_uid: str) -> None:
    from producers.reconcile import attach
    from tasks.poll import ensure_poll_loop

    record = attach(rt, job_id, task_uid)
    ensure_poll_loop(rt.settings, rt.ticks)
    console.print(f"job {record.job_id}: {record.state} with TaskUID {task_uid}; the workers "
                  "poll and collect it", highlight=False, markup=False)


def _resubmit(rt: Runtime, job_id: str, yes: bool) -> None:
    from producers import api
    from producers.reconcile import flagged_jobs, resubmit

    if not yes:
        if not sys.stdin.isatty():
            refuse([f"--resubmit {job_id}: submitting again may pay twice; confirm on a "
                    "terminal, or pass --yes"], queued_nothing=False)
        record = api.get_job(job_id, settings=rt.settings)
        shown = escape(record.reference) if record else "?"
        click.confirm(f"Submit job {job_id} ({shown}) again? If the API did take its first "
                      "call, it is paid twice", abort=True)
    record = resubmit(rt, job_id)
    api.publish(rt.settings, [(record.job_id, record.reference)])
    left = len(flagged_jobs(rt))
    console.print(f"job {job_id}: submitted again ({left} job(s) still need reconciliation)",
                  highlight=False, markup=False)


def _as_json(jobs: list[JobRecord], view: ApiView) -> dict[str, Any]:
    def detail(d: Any) -> dict[str, Any]:
        return {"task_uid": d.task_uid, "status": d.status, "img_list": list(d.img_list),
                "error_code": d.error_code, "error_message": d.error_message}

    return {"jobs": [r.to_dict() for r in jobs],
            "api": {"running": view.running,
                    "unrecorded": [detail(d) for d in view.unrecorded],
                    "asked": [detail(d) for d in view.asked]}}


def _when(unix: float | None) -> str:
    if unix is None:
        return "at an unknown time"
    return datetime.fromtimestamp(unix, UTC).isoformat(timespec="seconds")
