"""`POST /`: parse, inject faults, authenticate, rate-limit, dispatch, answer, record.

Order of the checks (each refusal is one RetCode): body -> injected faults -> PublicKey (110) ->
Signature (120) -> rate limit (140) -> Action (150) -> parameters (100) -> credits (130).
"""

from __future__ import annotations

import asyncio
import hmac
import json
import logging
import math
import time
import traceback
from http import HTTPStatus
from typing import Any

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import Response

from emulator.actions import ACTIONS, CallContext
from emulator.retcodes import Refusal, RetCode
from emulator.state import EmulatorState
from picpik.signing import sign

__all__ = ["TRANSPORT_SCOPE_KEY", "handle_api"]

log = logging.getLogger("emulator")

TRANSPORT_SCOPE_KEY = "cutout.transport"  # set by emulator.server's protocol, for dropped calls
_LARGE_BODY = 256 * 1024  # above this, parsing and hashing run in a thread, off the event loop
_DROPPED = frozenset({"fault_drop", "fault_drop_after"})
_IDENTITY = {"PublicKey": "key", "Action": "action", "request_uuid": "request_uuid"}  # -> call


async def handle_api(request: Request) -> Response:
    state: EmulatorState = request.app.state.emulator
    call: dict[str, Any] = {"t": time.time(), "key": "", "action": "", "outcome": "ok",
                            "retcode": 0, "request_uuid": None, "task_uid": None, "slow": False}
    headers: dict[str, str] = {}
    try:
        body = await _read_body(request, state.settings.max_body_bytes)
        params = await _parse(body)
        _identify(call, params)
        if _inject_faults(state, call):
            return await _drop(request, state, call)
        extra = await _serve(request, state, params, large=len(body) > _LARGE_BODY)
        call["task_uid"] = extra.get("TaskUID")
        status, message = 200, ""
    except Refusal as refusal:
        call.update(outcome=refusal.outcome, retcode=int(refusal.retcode))
        status, message, extra, headers = (refusal.http_status, refusal.answer_message, {},
                                           refusal.headers)
    except Exception as exc:
        # The frames and the type only: an exception's message might quote a parameter.
        log.error("internal error answering %s: %s\n%s", call["action"] or "a call",
                  type(exc).__name__, "".join(traceback.format_tb(exc.__traceback__)))
        call.update(outcome="internal_error", retcode=int(RetCode.INTERNAL_ERROR))
        status, message, extra = 500, "internal error", {}
    answer = {"RetCode": call["retcode"], "Action": call["action"], "Message": message,
              "request_uuid": call["request_uuid"] or "", **extra}
    if state.dice(state.config.faults.drop_after):  # processed, paid, and the answer lost
        call["outcome"] = "fault_drop_after"
        return await _drop(request, state, call)
    if state.dice(state.config.faults.status_after):  # processed, paid, a gateway error back
        call["outcome"] = "fault_status_after"
        await _finish(state, call)
        return _gateway_error(state.config.faults.status_after_code)
    await _finish(state, call)
    return Response(json.dumps(answer, separators=(",", ":")), status, headers,
                    media_type="application/json")


def _gateway_error(status: int) -> Response:
    """What a proxy in front of the API answers when it lost the upstream's answer: its own
    status and a plain-text page, no RetCode."""
    reason = HTTPStatus(status).phrase
    return Response(f"{status} {reason}\n".encode(), status, media_type="text/plain")


async def _read_body(request: Request, limit: int) -> bytes:
    """The whole body, refused (HTTP 413) as soon as it is known to exceed `limit` bytes."""
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > limit:
        raise _too_large(limit)
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise _too_large(limit)
        chunks.append(chunk)
    return b"".join(chunks)


def _too_large(limit: int) -> Refusal:
    return Refusal(RetCode.BAD_PARAMETER, "bad_request", f"larger than {limit} bytes",
                   field="body", http_status=413)


async def _parse(body: bytes) -> dict[str, Any]:
    try:
        params = await run_in_threadpool(json.loads, body) if len(body) > _LARGE_BODY else (
            json.loads(body))
    except ValueError:  # not JSON, or not UTF-8 (UnicodeDecodeError is a ValueError too)
        params = None
    if not isinstance(params, dict):
        raise Refusal(RetCode.BAD_PARAMETER, "bad_request", "not a JSON object", field="body",
                      http_status=400)
    return params


def _identify(call: dict[str, Any], params: dict[str, Any]) -> None:
    """Note who called and for what, before any check, so that refusals are logged too."""
    for name, field in _IDENTITY.items():
        value = params.get(name)
        if isinstance(value, str):
            call[field] = value


def _inject_faults(state: EmulatorState, call: dict[str, Any]) -> bool:
    """Raise the injected refusal, or return True when the connection must be dropped."""
    faults = state.config.faults
    if state.dice(faults.drop):
        call.update(outcome="fault_drop", retcode=None)
        return True
    if state.dice(faults.error_5xx):
        raise Refusal(RetCode.BUSY, "fault_5xx", "service busy (injected fault)",
                      http_status=503)
    if state.dice(faults.throttle):
        raise _throttled(state, "fault_throttle", "throttled (injected fault)", 1.0)
    return False


async def _serve(request: Request, state: EmulatorState, params: dict[str, Any], *,
                 large: bool) -> dict[str, Any]:
    key = params.get("PublicKey")
    private = state.keys.get(key) if isinstance(key, str) else None
    if not isinstance(key, str) or private is None:
        raise Refusal(RetCode.UNKNOWN_KEY, "unknown_key", "not a configured key",
                      field="PublicKey")
    await _check_signature(params, private, large)
    # Read now, not when the call began: a slow upload or a long signature check must not
    # count the call in a window that had passed before it could be admitted.
    now = time.monotonic()
    _admit(state, key, now)
    name = params.get("Action")
    action = ACTIONS.get(name) if isinstance(name, str) else None
    if action is None:
        raise Refusal(RetCode.UNKNOWN_ACTION, "unknown_action", "not an Action of this server",
                      field="Action")
    if not isinstance(params.get("request_uuid", ""), str):  # the first parameter checked
        raise Refusal(RetCode.BAD_PARAMETER, "bad_parameter", "must be a string",
                      field="request_uuid")
    base_url = state.settings.public_url or str(request.base_url)
    ctx = CallContext(state, params, key, now, base_url.rstrip("/"), large)
    return await action(ctx)


async def _check_signature(params: dict[str, Any], private: str, large: bool) -> None:
    given = params.get("Signature")
    if not isinstance(given, str):
        raise Refusal(RetCode.BAD_SIGNATURE, "bad_signature", "missing", field="Signature")
    expected = await run_in_threadpool(sign, params, private) if large else sign(params, private)
    # Lowercase hex only. compare_digest raises TypeError on non-ASCII str: checked first.
    if not (given.isascii() and hmac.compare_digest(given, expected)):
        raise Refusal(RetCode.BAD_SIGNATURE, "bad_signature", "does not match the parameters",
                      field="Signature")


def _admit(state: EmulatorState, key: str, now: float) -> None:
    config = state.config
    wait_s = state.ledger(key).admit(now, config.rate_window_s, config.window_capacity)
    if wait_s is not None:
        # The window's capacity, not rate_limit (calls per second), which this would misstate.
        raise _throttled(state, "throttled", f"over the rate limit of {config.window_capacity} "
                         f"calls per {config.rate_window_s:g} s", wait_s)


def _throttled(state: EmulatorState, outcome: str, message: str, wait_s: float) -> Refusal:
    status = state.config.throttle_http_status
    refusal = Refusal(RetCode.THROTTLED, outcome, message, http_status=status)
    if status == 429:
        refusal.headers["Retry-After"] = str(max(1, math.ceil(wait_s)))
    return refusal


async def _finish(state: EmulatorState, call: dict[str, Any]) -> None:
    """Record the call, then hold the answer back when a slow-answer fault says so."""
    faults = state.config.faults
    slow = call["outcome"] not in _DROPPED and state.dice(faults.slow_rate)
    call["slow"] = slow
    call["took_s"] = round(time.time() - call["t"], 6)  # the answer time, before any held-back
    state.record(call, time.monotonic())  # calls are recorded in the order of their times
    if slow:
        state.ledger(call["key"]).slow_answers += 1
        await asyncio.sleep(faults.slow_s)


async def _drop(request: Request, state: EmulatorState, call: dict[str, Any]) -> Response:
    await _finish(state, call)
    transport = request.scope.get(TRANSPORT_SCOPE_KEY)
    if transport is not None:
        transport.abort()
        # Let the server see the connection lost, so the response below is discarded unsent.
        await asyncio.sleep(0)
        await asyncio.sleep(0)
    return Response(b"", 500)
