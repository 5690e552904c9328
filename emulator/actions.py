"""The three Actions, once the call is authenticated and admitted by the rate limiter."""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable, Iterable
from concurrent.futures import Future
from dataclasses import dataclass
from typing import Any

from pydantic import ValidationError
from starlette.concurrency import run_in_threadpool

from emulator.images import decode_problem, decode_raw_image
from emulator.retcodes import Refusal, RetCode
from emulator.state import EmulatorState
from emulator.tasks import TASK_ERROR_CODE, Task, TaskError, new_task_uid
from picpik.errors import InvalidInput
from picpik.models import (
    ListTasksDetailsRequest,
    RemoveBackgroundOptions,
    invalid_input_from,
    parse_options,
)

__all__ = ["ACTIONS", "COMMON_PARAMS", "CallContext", "bad_parameter"]

COMMON_PARAMS = frozenset({"Action", "PublicKey", "Signature", "request_uuid"})
# The API's own names only (the models also take Python names, which the API does not).
_OPTION_NAMES = frozenset(
    info.alias for info in RemoveBackgroundOptions.model_fields.values() if info.alias
)
_LIST_NAMES = frozenset({"TaskUIDList"})
_INJECTED_ERROR = TaskError(TASK_ERROR_CODE, "the task failed (injected fault task_error)")


@dataclass(slots=True)
class CallContext:
    """One authenticated call: who made it, with what, when, and where results are served."""

    state: EmulatorState
    params: dict[str, Any]
    key: str
    now: float  # monotonic
    base_url: str
    large: bool  # decode in a thread, off the event loop

    def own_params(self) -> dict[str, Any]:
        return {name: value for name, value in self.params.items() if name not in COMMON_PARAMS}


def bad_parameter(exc: InvalidInput) -> Refusal:
    return Refusal(RetCode.BAD_PARAMETER, "bad_parameter", exc.message, field=exc.field)


def _refuse_unknown(names: Iterable[str], known: frozenset[str]) -> None:
    unknown = sorted(set(names) - known)
    if unknown:
        raise bad_parameter(InvalidInput("not a parameter of this Action", field=unknown[0]))


async def remove_background(ctx: CallContext) -> dict[str, Any]:
    params = ctx.own_params()
    raw = params.pop("RawImage", None)
    _refuse_unknown(params, _OPTION_NAMES)
    try:
        options = parse_options(params)
    except InvalidInput as exc:
        raise bad_parameter(exc) from exc
    decoded = await run_in_threadpool(decode_raw_image, raw) if ctx.large else decode_raw_image(raw)
    image, (width, height) = decoded
    try:
        options.check_box_inside(width, height)
    except InvalidInput as exc:
        raise bad_parameter(exc) from exc
    if not ctx.state.ledger(ctx.key).spend_credit():
        raise Refusal(RetCode.NO_CREDITS, "no_credits", f"no credits left for {ctx.key}")
    task = _start_task(ctx, options, image)
    # The header was enough to accept (and bill) the call; the whole image is decoded while the
    # task runs, off the call's path, and one that cannot be decoded ends the task in Error, as
    # the real API does.
    if ctx.large:
        task.decoding = ctx.state.decode_pool.submit(decode_problem, image)
    else:  # a small image decodes in less time than a hand-over to the thread would take
        task.decoding = _done(decode_problem(image))
    return {"TaskUID": task.uid}


def _done(problem: str | None) -> Future[str | None]:
    done: Future[str | None] = Future()
    done.set_result(problem)
    return done


def _start_task(ctx: CallContext, options: RemoveBackgroundOptions, image: bytes) -> Task:
    state, config = ctx.state, ctx.state.config
    # Timing is fixed when the task is accepted: a later config change does not move it.
    now = time.monotonic()
    task = Task(
        uid=new_task_uid(),
        key=ctx.key,
        running_at=now + config.queue_s,
        done_at=now + config.queue_s + config.run_s,
        error=_INJECTED_ERROR if state.dice(config.faults.task_error) else None,
        options=options,
        image=image,
        malformed=state.dice(config.faults.bad_detail),
    )
    state.tasks.add(task)
    state.tasks.sweep(now, config.result_ttl_s, state.settings.max_stored_bytes)
    return task


async def list_tasks_details(ctx: CallContext) -> dict[str, Any]:
    params = ctx.own_params()
    _refuse_unknown(params, _LIST_NAMES)
    try:
        request = ListTasksDetailsRequest.model_validate(params)
    except ValidationError as exc:
        raise bad_parameter(invalid_input_from(exc)) from exc
    details = []
    for uid in request.task_uids:
        task = ctx.state.tasks.get(uid)
        # Unknown TaskUIDs (and other keys' tasks) are left out, as if they did not exist.
        if task is not None and task.key == ctx.key:
            details.append(_detail(task, ctx.now, ctx.base_url))
    return {"TaskDetailList": details}


def _detail(task: Task, now: float, base_url: str) -> dict[str, Any]:
    status = task.status(now)
    error = task.error if status == "Error" else None
    return {
        "TaskUID": task.uid,
        "Action": "RemoveBackground",
        "Status": status,
        "ImgList": [f"{base_url}/results/{task.token}.png"] if status == "Finished" else [],
        "ConsumeApiPoint": 1,
        # An unreadable entry (fault bad_detail) spoils the whole answer for a strict reader.
        "ErrorCode": "unreadable" if task.malformed else error.code if error else 0,
        "ErrorMassage": error.message if error else "",
    }


async def list_running_tasks(ctx: CallContext) -> dict[str, Any]:
    _refuse_unknown(ctx.own_params(), frozenset())
    return {"TaskUIDList": ctx.state.tasks.in_flight(ctx.key, ctx.now)}


ACTIONS: dict[str, Callable[[CallContext], Awaitable[dict[str, Any]]]] = {
    "RemoveBackground": remove_background,
    "ListTasksDetails": list_tasks_details,
    "ListRunningTasks": list_running_tasks,
}
