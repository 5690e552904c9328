"""`GET /results/<token>.png`: rendered on first download (in a thread), then kept in memory."""

from __future__ import annotations

import asyncio
import logging
import time
from functools import partial

from starlette.requests import Request
from starlette.responses import Response

from emulator.render import render_result
from emulator.state import EmulatorState
from emulator.tasks import Task

__all__ = ["serve_result"]

log = logging.getLogger("emulator")


def _text(status: int, text: str) -> Response:
    return Response(text.encode(), status, media_type="text/plain")


async def serve_result(request: Request) -> Response:
    state: EmulatorState = request.app.state.emulator
    task = state.tasks.by_token(request.path_params["token"])
    if task is None:
        return _text(404, "no such result")
    ledger = state.ledger(task.key)
    now = time.monotonic()
    if task.status(now) != "Finished" or task.expired(now, state.config.result_ttl_s):
        ledger.downloads_refused += 1
        return _text(404, "no such result (not finished, or expired)")
    if state.dice(state.config.faults.result_5xx):
        ledger.downloads_refused += 1
        return _text(503, "service busy (injected fault)")
    if state.config.faults.result_slow_s:
        await asyncio.sleep(state.config.faults.result_slow_s)  # a distant CDN
    try:
        png = await _rendered(state, task)
    except Exception:
        log.exception("rendering the result of task %s failed", task.uid)
        return _text(500, "rendering failed")
    ledger.downloads += 1
    return Response(png, media_type="image/png")


async def _rendered(state: EmulatorState, task: Task) -> bytes:
    if task.png is not None:
        return task.png
    if task.rendering is None:  # the first download starts the work; later ones wait on it
        if task.image is None:
            raise RuntimeError("the input image is gone")
        loop = asyncio.get_running_loop()
        task.rendering = loop.run_in_executor(
            state.render_pool, partial(render_result, plain=state.settings.render == "plain"),
            task.image, task.options, state.settings.model_path,
        )
    png = await task.rendering
    if task.png is None and not task.gone:
        state.tasks.rendered(task, png)
    return png
