"""`make run`: the main job end to end on this machine, from nothing to a before/after page.

Starts Redis (only if none answers on CUTOUT_REDIS_URL), the local API server (only if no
CUTOUT_PUBLIC_KEY points at the real API), a worker and Flower; writes sample photos with a free
licence (scikit-image's astronaut, coffee, chelsea and rocket); enqueues them as one batch; shows
progress; prints where the cutouts, the page and Flower are; stops everything it started.
Run it as `python -m producers.demo [--keep] [--out DIR]`.
"""

from __future__ import annotations

import shutil
import signal
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import click
import redis
from rich.console import Console
from rich.markup import escape

from config import Settings, get_settings
from picpik.errors import CutoutError
from producers import api
from producers.processes import ProcessGroup, free_port, port_is_free, redis_answers
from producers.progress import wait_with_progress
from producers.report import write_report

__all__ = ["SAMPLES", "main", "write_samples"]

# skimage.data name -> where the photo comes from and its licence (scikit-image's own notes).
SAMPLES = {
    "astronaut": "Eileen Collins, NASA Great Images database; public domain",
    "coffee": "Rachel Michetti, courtesy of Pikolo Espresso Bar; CC0",
    "chelsea": "Chelsea the cat, by Stefan van der Walt; CC0",
    "rocket": "DSCOVR launch on Falcon 9, SpaceX; public domain",
}
DEMO_PUBLIC_KEY = "demo-public"
DEMO_PRIVATE_KEY = "demo-private"  # only ever valid on the local API server the demo starts
WORKER_CONCURRENCY = 2
# Through this interpreter, so a venv that is not activated still finds celery.
CELERY = [sys.executable, "-m", "celery", "-A", "tasks"]

console = Console(soft_wrap=True)


def write_samples(folder: Path) -> list[Path]:
    """The sample photos as JPEG files in `folder` (scikit-image ships them, no download)."""
    try:
        from skimage import data
    except ImportError as exc:
        raise RuntimeError("the demo photos need scikit-image: pip install 'cutout[demo]'") from exc
    from PIL import Image

    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for name in SAMPLES:
        path = folder / f"{name}.jpg"
        Image.fromarray(getattr(data, name)()).save(path, "JPEG", quality=92)
        paths.append(path)
    return paths


@dataclass
class Stack:
    """What the demo talks to: the settings every part shares, and what it had to start."""

    settings: Settings
    flower_url: str
    started: list[str]
    check: Callable[[], None]  # raises when a started process has died


@contextmanager
def running_stack(settings: Settings, samples: Path, logs: Path) -> Iterator[Stack]:
    """Start what is missing, yield the stack, and stop everything it started on the way out."""
    group = ProcessGroup(logs)
    scratch = Path(tempfile.mkdtemp(prefix="cutout-demo-"))
    env: dict[str, str] = {"CUTOUT_FILES_ROOT": str(samples)}
    try:
        if not redis_answers(settings.redis_url):
            url = group.start_redis(scratch)
            env |= {"CUTOUT_REDIS_URL": url, "CUTOUT_BROKER_URL": url,
                    "CUTOUT_RESULT_BACKEND_URL": url}
        if not settings.public_key:
            env |= _start_local_api(group, settings)
        group.start("worker", [*CELERY, "worker", "--loglevel", "INFO",
                               "--concurrency", str(WORKER_CONCURRENCY), "-n", "demo@%h"], env)
        flower_url = _start_flower(group, settings, env)
        overrides: dict[str, Any] = {k.removeprefix("CUTOUT_").lower(): v for k, v in env.items()}
        started = [name for name, _ in group.started]
        yield Stack(Settings(**overrides), flower_url, started, group.check_alive)
    finally:
        group.stop()
        shutil.rmtree(scratch, ignore_errors=True)


def _start_local_api(group: ProcessGroup, settings: Settings) -> dict[str, str]:
    rate = f"{settings.rate_limit:g}"
    base_url = group.start_emulator({
        "CUTOUT_EMULATOR_KEYS": f"{DEMO_PUBLIC_KEY}:{DEMO_PRIVATE_KEY}",
        "CUTOUT_EMULATOR_RATE_LIMIT": rate,
    })
    return {"CUTOUT_API_BASE_URL": base_url, "CUTOUT_PUBLIC_KEY": DEMO_PUBLIC_KEY,
            "CUTOUT_PRIVATE_KEY": DEMO_PRIVATE_KEY, "CUTOUT_RATE_LIMIT": rate}


def _start_flower(group: ProcessGroup, settings: Settings, env: dict[str, str]) -> str:
    port = settings.flower_port if port_is_free(settings.flower_port) else free_port()
    auth = settings.flower_basic_auth.get_secret_value()
    group.start("flower", [*CELERY, "flower", "--address=127.0.0.1", f"--port={port}"],
                {**env, "FLOWER_BASIC_AUTH": auth})
    return f"http://127.0.0.1:{port}/ (user {auth.split(':', 1)[0]!r}, password from "\
        "CUTOUT_FLOWER_BASIC_AUTH)"


def run_demo(out: Path, keep: bool, timeout_s: float) -> int:
    """The whole demo; the exit code is 0 when every cutout was made."""
    settings = get_settings()
    out = out.resolve()
    samples = write_samples(out / "samples")
    console.print(f"sample photos in [bold]{escape(str(out / 'samples'))}[/]:", highlight=False)
    for name, origin in SAMPLES.items():
        console.print(f"  {name}.jpg  ({origin})", highlight=False)
    with running_stack(settings, out / "samples", out / "logs") as stack:
        _print_stack(stack, out / "logs")
        batch = f"demo-{time.strftime('%Y%m%d-%H%M%S')}"
        cutouts = out / batch
        ids = api.enqueue_many([str(p) for p in samples], batch=batch,
                               output_dir=str(cutouts), settings=stack.settings)
        console.print(f"queued {len(ids)} jobs in batch [bold]{escape(batch)}[/]",
                      highlight=False)
        records = wait_with_progress(ids, console=console, settings=stack.settings,
                                     timeout_s=timeout_s, check=stack.check)
        page = write_report(batch, cutouts / "report.html", settings=stack.settings)
        ok = _print_outcome(records, cutouts, page, stack.flower_url)
        if keep:
            _hold(stack)
    return 0 if ok else 1


def _print_stack(stack: Stack, logs: Path) -> None:
    s = stack.settings
    redis_note = "started by the demo" if "redis" in stack.started else "already running"
    api_note = "the local API server" if "emulator" in stack.started else "CUTOUT_API_BASE_URL"
    say(f"redis:    {printable_url(s.redis_url)} ({redis_note})")
    say(f"api:      {s.api_base_url} ({api_note}, PublicKey {s.public_key}, "
        f"{s.rate_limit:g} calls/s)")
    say(f"started:  {', '.join(stack.started)}; logs in {logs}")


def say(text: str) -> None:
    """One line as it is: no rich markup or highlighting read into paths, URLs or reasons."""
    console.print(text, markup=False, highlight=False)


def printable_url(url: str) -> str:
    """The URL with its password, if it has one, shown as `***`."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    userinfo, host = parts.netloc.rsplit("@", 1)
    user = userinfo.split(":", 1)[0]
    return parts._replace(netloc=f"{user}:***@{host}").geturl()


def _print_outcome(
    records: dict[str, api.JobRecord], cutouts: Path, page: Path, flower_url: str
) -> bool:
    ok = True
    for record in records.values():
        state = str(record.state)
        ok &= state == "SUCCEEDED"
        where = ", ".join(record.result_paths) if state == "SUCCEEDED" else \
            f"{state}: {record.error_code or ''} {record.error_message or ''}".strip()
        say(f"  {Path(record.reference).name} -> {where}")
    console.print(f"cutouts:  [bold]{escape(str(cutouts))}[/]", highlight=False)
    console.print(f"page:     [bold]{escape(str(page))}[/]  ({escape(page.as_uri())})",
                  highlight=False)
    say(f"flower:   {flower_url}")
    return ok


def _hold(stack: Stack) -> None:
    say(f"keeping {', '.join(stack.started)} running; Ctrl-C stops them. The cutout command "
        f"reaches them with CUTOUT_REDIS_URL={printable_url(stack.settings.redis_url)}")
    try:
        while True:
            time.sleep(1)
    except KeyboardInterrupt:
        console.print("stopping")


def _exit_on_signal(signum: int, _frame: object) -> None:
    raise SystemExit(128 + signum)


@click.command(context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--out", metavar="DIR", type=click.Path(path_type=Path, file_okay=False),
              default=None,
              help="Where samples, cutouts, the page and logs go (default: CUTOUT_OUTPUT_DIR).")
@click.option("--keep", is_flag=True, help="Keep the started processes running until Ctrl-C.")
@click.option("--timeout-s", metavar="S", type=float, default=600.0, show_default=True,
              help="Stop waiting for the cutouts after S seconds.")
def main(out: Path | None, keep: bool, timeout_s: float) -> None:
    """Run the whole pipeline on sample photos and write the before/after page."""
    # A polite `kill` (or a closed terminal) must stop the started processes too: exit through
    # the normal unwinding, which runs the stack's cleanup.
    for signum in (signal.SIGTERM, signal.SIGHUP):
        signal.signal(signum, _exit_on_signal)
    try:
        code = run_demo(out or get_settings().output_dir, keep, timeout_s)
    except KeyboardInterrupt:
        console.print("interrupted; everything the demo started is stopped")
        code = 130
    except (RuntimeError, CutoutError, redis.RedisError) as exc:
        console.print(f"[red]demo failed:[/] {escape(str(exc))}", highlight=False)
        code = 1
    sys.exit(code)


if __name__ == "__main__":
    main()
