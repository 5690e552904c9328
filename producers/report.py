"""The before/after page of a batch: one self-contained HTML file to look at the cutouts.

Every image is a thumbnail inlined as a data URI, so the page can be mailed or archived alone.
Each job shows its input beside its cutout on a checkerboard (transparency shows as squares),
its state, its timings (queued -> submitted -> finished) and, for a failure, the reason.
"""

from __future__ import annotations

import base64
import html
import io
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from PIL import Image, UnidentifiedImageError

from config import Settings, get_settings
from picpik.errors import CutoutError, InvalidInput
from producers import api
from producers.manifest import is_url
from producers.progress import STATES
from tasks.inputs.fetch import fetch

__all__ = ["Thumbnail", "render_page", "thumbnail", "thumbnail_data_uri", "write_report"]

THUMBNAIL_PX = 256
REPORT_NAME = "report.html"

_CSS = """
body { font: 14px/1.4 system-ui, sans-serif; margin: 24px; color: #222; background: #fafafa; }
h1 { font-size: 20px; margin: 0 0 4px; }
.summary { color: #555; margin-bottom: 20px; }
.jobs { display: grid; grid-template-columns: repeat(auto-fill, minmax(560px, 1fr)); gap: 16px; }
.job { background: #fff; border: 1px solid #ddd; border-radius: 8px; padding: 12px; }
.job h2 { font-size: 14px; margin: 0 0 8px; overflow-wrap: anywhere; font-weight: 600; }
.pair { display: flex; gap: 12px; }
figure { margin: 0; flex: 1; }
figcaption { color: #777; font-size: 12px; margin-top: 4px; }
.frame { height: 256px; display: flex; align-items: center; justify-content: center;
  border: 1px solid #eee; color: #999; font-size: 12px; text-align: center; padding: 4px; }
.checker { background: repeating-conic-gradient(#ccc 0 25%, #fff 0 50%) 50% / 16px 16px; }
img { max-width: 100%; max-height: 100%; display: block; }
.state { display: inline-block; padding: 1px 8px; border-radius: 10px; font-size: 12px;
  background: #e0e7ff; color: #334; }
.SUCCEEDED { background: #d1fae5; color: #064e3b; }
.FAILED { background: #fee2e2; color: #7f1d1d; }
.NEEDS_RECONCILIATION { background: #fef3c7; color: #78350f; }
.timings { color: #555; font-size: 12px; margin-top: 8px; }
.error { color: #7f1d1d; font-size: 12px; margin-top: 6px; overflow-wrap: anywhere; }
"""


def write_report(
    batch: str, out: Path | None = None, *, settings: Settings | None = None
) -> Path:
    """Write the page of `batch` to `out` (default: report.html beside its cutouts)."""
    settings = settings or get_settings()
    jobs = api.batch_jobs(batch, settings=settings)
    if not jobs:
        raise InvalidInput(f"batch {batch!r} has no jobs", field="batch")
    path = out or default_report_path(jobs, settings)
    path.parent.mkdir(parents=True, exist_ok=True)
    page = render_page(batch, jobs, settings=settings)
    path.write_text(page, encoding="utf-8")
    return path


def default_report_path(jobs: Sequence[api.JobRecord], settings: Settings) -> Path:
    """report.html in the batch's output folder; when its jobs name none (their cutouts are in
    each worker's CUTOUT_OUTPUT_DIR) or several, report-BATCH.html in ours."""
    folders = {job.output_dir for job in jobs}
    if len(folders) == 1 and (folder := folders.pop()):
        return Path(folder) / REPORT_NAME
    return settings.output_dir / f"report-{jobs[0].batch}.html"


def render_page(batch: str, jobs: Sequence[api.JobRecord], *, settings: Settings) -> str:
    """The whole page as text."""
    cards = "\n".join(_card(job, settings) for job in jobs)
    title = html.escape(f"cutout: batch {batch}")
    return (
        "<!doctype html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
        f"<title>{title}</title><style>{_CSS}</style></head><body>\n"
        f"<h1>{title}</h1>\n<div class=\"summary\">{html.escape(summary_line(jobs))}</div>\n"
        f"<div class=\"jobs\">\n{cards}\n</div>\n</body></html>\n"
    )


def summary_line(jobs: Sequence[api.JobRecord]) -> str:
    """`4 job(s): SUCCEEDED 3, FAILED 1; 12.3 s from first queued to last finished; written
    2026-11-26 05:40:09 UTC`."""
    counts = Counter(str(job.state) for job in jobs)
    parts = [f"{state} {counts[state]}" for state in STATES if counts[state]]
    line = f"{len(jobs)} job(s): {', '.join(parts)}"
    starts = [job.created_at for job in jobs if job.created_at is not None]
    ends = [job.finished_at for job in jobs if job.finished_at is not None]
    if starts and ends:
        line += f"; {_seconds(max(ends) - min(starts))} from first queued to last finished"
    stamp = time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime())
    return f"{line}; written {stamp}"


def _card(job: api.JobRecord, settings: Settings) -> str:
    state = str(job.state)
    name = Path(job.reference).name if not is_url(job.reference) else job.reference
    max_bytes = settings.max_image_bytes
    before = _figure(*_input_thumbnail(job.reference, settings), "before")
    afters = [_figure(_file_thumbnail(Path(p), max_bytes), "cutout missing", "after")
              for p in job.result_paths] if state == "SUCCEEDED" else []
    if not afters:
        afters = [_figure(None, f"no cutout ({state.lower()})", "after")]
    error = ""
    if job.error_message or job.error_code:
        where = "/".join(x for x in (job.error_stage, job.error_code, job.error_field) if x)
        reason = html.escape(f"{where}: {job.error_message or 'no message'}")
        error = f"<div class=\"error\">{reason}</div>"
    return (
        f"<section class=\"job\" data-state=\"{state}\">"
        f"<h2 title=\"{html.escape(job.reference)}\">{html.escape(name)} "
        f"<span class=\"state {state}\">{state}</span></h2>"
        f"<div class=\"pair\">{before}{''.join(afters)}</div>"
        f"<div class=\"timings\">{html.escape(timings_line(job))}</div>{error}</section>"
    )


def _figure(thumb: Thumbnail | None, missing: str, caption: str) -> str:
    """A framed thumbnail with its caption; a cutout (caption "after") sits on a checkerboard."""
    if thumb is None:
        inner, frame = html.escape(missing), "frame"
    else:
        inner = f"<img src=\"{thumb.uri}\" alt=\"{caption}\">"
        frame = "frame checker" if caption == "after" else "frame"
        caption += f" · {thumb.width}&times;{thumb.height} px"
    return (
        f"<figure><div class=\"{frame}\">{inner}</div>"
        f"<figcaption>{caption}</figcaption></figure>"
    )


def timings_line(job: api.JobRecord) -> str:
    """`queued 05:40:01 UTC → submitted +0.4 s → finished +2.1 s (total 2.5 s)`."""
    if job.created_at is None:
        return "no timings recorded"
    line = f"queued {time.strftime('%H:%M:%S', time.gmtime(job.created_at))} UTC"
    if job.submitted_at is not None:
        line += f" → submitted +{_seconds(job.submitted_at - job.created_at)}"
    if job.finished_at is not None:
        since = job.submitted_at if job.submitted_at is not None else job.created_at
        line += f" → finished +{_seconds(job.finished_at - since)}"
        line += f" (total {_seconds(job.finished_at - job.created_at)})"
    return line


def _seconds(value: float) -> str:
    return f"{value:.1f} s" if value < 120 else f"{value / 60:.1f} min"


def _input_thumbnail(reference: str, settings: Settings) -> tuple[Thumbnail | None, str]:
    """The input's thumbnail, or None and why. URLs are fetched again through the workers'
    guarded fetcher (same allow-list, size and time caps)."""
    if not is_url(reference):
        return _file_thumbnail(Path(reference), settings.max_image_bytes), "input not readable"
    try:
        data = fetch(reference, settings)
    except CutoutError as exc:
        return None, f"input not fetched: {exc.message}"
    return thumbnail(data), "input is not an image"


def _file_thumbnail(path: Path, max_bytes: int) -> Thumbnail | None:
    try:
        if path.stat().st_size > max_bytes:
            return None
        return thumbnail(path.read_bytes())
    except OSError:
        return None


@dataclass(frozen=True)
class Thumbnail:
    """A downscaled image as a data URI, with the original's size."""

    uri: str
    width: int
    height: int


def thumbnail(data: bytes, size: int = THUMBNAIL_PX) -> Thumbnail | None:
    """A downscaled copy: PNG when it has transparency, else JPEG; None if the bytes are not
    an image Pillow reads."""
    try:
        with Image.open(io.BytesIO(data)) as image:
            width, height = image.size
            image.draft("RGB", (size, size))  # JPEG decodes at a reduced scale, much faster
            image.thumbnail((size, size))
            return Thumbnail(_encode(image), width, height)
    except (UnidentifiedImageError, OSError, ValueError, Image.DecompressionBombError):
        return None


def thumbnail_data_uri(data: bytes, size: int = THUMBNAIL_PX) -> str | None:
    """Only the data URI of `thumbnail`."""
    thumb = thumbnail(data, size)
    return thumb.uri if thumb else None


def _encode(image: Image.Image) -> str:
    buffer = io.BytesIO()
    has_alpha = image.mode in ("RGBA", "LA", "PA") or "transparency" in image.info
    if has_alpha or image.mode in ("L", "1"):
        image.save(buffer, "PNG", optimize=True)
        mime = "image/png"
    else:
        image.convert("RGB").save(buffer, "JPEG", quality=85)
        mime = "image/jpeg"
    return f"data:{mime};base64,{base64.b64encode(buffer.getvalue()).decode('ascii')}"
