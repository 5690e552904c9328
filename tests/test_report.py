"""The before/after page is one self-contained file whose every image loads in a real browser."""

from __future__ import annotations

import re
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests
from PIL import Image
from playwright.sync_api import Browser, sync_playwright

from config import Settings
from producers.demo import SAMPLES
from producers.processes import free_port
from producers.report import render_page, thumbnail_data_uri, write_report
from tasks.store.ledger import Ledger
from tasks.store.records import JobState
from tests.support.workers import ImageServer, settings_env

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
]


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    if not CHROMIUM.exists():
        pytest.fail("Chromium is missing: apt-get install chromium (make system does it)")
    with sync_playwright() as playwright:
        instance = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        yield instance
        instance.close()


def image_states(browser: Browser, page_path: Path) -> list[dict[str, Any]]:
    """Every <img> of the page as the browser sees it, once the page has loaded."""
    page = browser.new_page()
    try:
        page.goto(page_path.as_uri(), wait_until="load")
        states: list[dict[str, Any]] = page.eval_on_selector_all(
            "img",
            "imgs => imgs.map(i => ({complete: i.complete, width: i.naturalWidth,"
            " src: i.src.slice(0, 22)}))",
        )
        return states
    finally:
        page.close()


def _photo(path: Path, size: tuple[int, int], colour: tuple[int, int, int]) -> Path:
    Image.new("RGB", size, colour).save(path)
    return path


def _cutout(path: Path, size: tuple[int, int]) -> Path:
    image = Image.new("RGBA", size, (0, 0, 0, 0))
    image.paste((200, 40, 40, 255), (size[0] // 4, size[1] // 4, size[0] * 3 // 4, size[1]))
    image.save(path)
    return path


def _ledger_batch(redis_url: str, tmp_path: Path, batch: str) -> Ledger:
    """Three jobs written through the ledger: two succeeded with cutouts, one failed."""
    ledger = Ledger.from_url(redis_url)
    inputs = [_photo(tmp_path / f"in{i}.jpg", (320, 200), (30 * i, 90, 160)) for i in range(3)]
    ledger.create_many([(f"job-{i}", str(p)) for i, p in enumerate(inputs)], {},
                       batch=batch, output_dir=str(tmp_path / "out"))
    (tmp_path / "out").mkdir()
    for i in range(2):
        ledger.transition(f"job-{i}", [JobState.ACCEPTED], JobState.SUBMITTED,
                          fields={"submitted_at": "__now__", "task_uid": f"uid-{i}"})
        result = _cutout(tmp_path / "out" / f"in{i}.png", (320, 200))
        ledger.transition(f"job-{i}", [JobState.SUBMITTED], JobState.SUCCEEDED,
                          fields={"finished_at": "__now__", "result_paths": [str(result)]})
    ledger.transition("job-2", [JobState.ACCEPTED], JobState.FAILED,
                      fields={"finished_at": "__now__", "error_stage": "submit",
                              "error_code": "rejected_parameters",
                              "error_message": "Box reaches outside the image"})
    return ledger


def test_every_image_on_the_page_loads_in_chromium(
    browser: Browser, redis_url: str, tmp_path: Path
) -> None:
    ledger = _ledger_batch(redis_url, tmp_path, "report-batch")
    # One more input, given as a URL: the page fetches it through the guarded fetcher.
    served = tmp_path / "served"
    served.mkdir()
    _photo(served / "remote.png", (100, 80), (10, 200, 10))
    with ImageServer(served) as server:
        ledger.create_many([("job-url", f"{server.url}/remote.png")], {}, batch="report-batch")
        jobs = [job for job in ledger.get_many(ledger.batch_ids("report-batch")) if job]
        settings = Settings(redis_url=redis_url, fetch_allow=("127.0.0.1",))
        page_path = tmp_path / "report.html"
        page_path.write_text(render_page("report-batch", jobs, settings=settings))
    images = image_states(browser, page_path)
    # Four inputs and two cutouts; the failed and the waiting job show no cutout.
    assert len(images) == 6
    assert all(img["complete"] and img["width"] > 0 for img in images), images
    assert all(img["src"].startswith("data:image/") for img in images)
    assert "100&times;80 px" in page_path.read_text()


def test_the_page_shows_states_timings_and_the_failure_reason(
    redis_url: str, tmp_path: Path
) -> None:
    ledger = _ledger_batch(redis_url, tmp_path, "b1")
    jobs = [job for job in ledger.get_many(ledger.batch_ids("b1")) if job]
    page = render_page("b1", jobs, settings=Settings(redis_url=redis_url))
    assert "3 job(s): SUCCEEDED 2, FAILED 1" in page
    assert "submit/rejected_parameters: Box reaches outside the image" in page
    assert page.count("→ submitted +") == 2
    assert page.count("320&times;200 px") == 5
    assert "checker" in page
    # Self-contained: no resource is fetched from anywhere.
    assert not re.search(r"""(src|href)=["'](?!data:)""", page)


def test_write_report_puts_the_page_beside_the_batchs_cutouts(
    redis_url: str, tmp_path: Path
) -> None:
    _ledger_batch(redis_url, tmp_path, "b2")
    path = write_report("b2", settings=Settings(redis_url=redis_url))
    assert path == tmp_path / "out" / "report.html"
    assert path.read_text().count("<img ") == 5


def test_a_thumbnail_keeps_transparency_and_is_at_most_256_px(tmp_path: Path) -> None:
    cutout = _cutout(tmp_path / "big.png", (1200, 800))
    uri = thumbnail_data_uri(cutout.read_bytes())
    assert uri is not None and uri.startswith("data:image/png;base64,")
    photo = _photo(tmp_path / "big.jpg", (1200, 800), (1, 2, 3))
    jpeg = thumbnail_data_uri(photo.read_bytes())
    assert jpeg is not None and jpeg.startswith("data:image/jpeg;base64,")
    import base64
    import io

    with Image.open(io.BytesIO(base64.b64decode(uri.split(",", 1)[1]))) as thumb:
        assert max(thumb.size) == 256 and thumb.mode == "RGBA"


def test_bytes_that_are_not_an_image_give_no_thumbnail() -> None:
    assert thumbnail_data_uri(b"<html>not an image</html>") is None


def test_the_page_make_run_ends_with_loads_every_image_in_chromium(
    browser: Browser, redis_url: str, tmp_path: Path
) -> None:
    # The demo, as `make run` runs it, on the suite's Redis: it starts the local API server,
    # a worker and Flower itself, and runs the sample photos through the whole pipeline.
    # With --keep it waits once done; a SIGTERM must then stop everything it started.
    env = settings_env({"redis_url": redis_url, "flower_port": free_port()})
    demo = subprocess.Popen(
        [sys.executable, "-m", "producers.demo", "--out", str(tmp_path), "--keep"],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env,
    )
    try:
        output = _read_until(demo, "keeping ")
    finally:
        demo.send_signal(signal.SIGTERM)
        rest, _ = demo.communicate(timeout=60)
    assert demo.returncode == 128 + signal.SIGTERM, output + rest
    assert "SUCCEEDED 4" in output
    images = image_states(browser, Path(re.findall(r"page:\s+(\S+)", output)[0]))
    assert len(images) == 2 * len(SAMPLES)
    assert all(img["complete"] and img["width"] > 0 for img in images), images
    started_urls = re.findall(r"(?:api|flower):\s+(http://\S+)", output)
    assert len(started_urls) == 2, output
    for url in started_urls:
        with pytest.raises(requests.ConnectionError):
            requests.get(url, timeout=5)  # stopped on the way out


def _read_until(process: subprocess.Popen[str], marker: str) -> str:
    """The process's output up to and including the first line holding marker."""
    assert process.stdout is not None
    lines = []
    for line in process.stdout:
        lines.append(line)
        if marker in line:
            break
    return "".join(lines)
