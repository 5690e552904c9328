"""`/_admin/*`: what the server saw, and its configuration while it runs (local tool, no auth)."""

from __future__ import annotations

import json
from socket import IPPROTO_TCP, TCP_NODELAY
from typing import Any

from pydantic import ValidationError
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from emulator.api import TRANSPORT_SCOPE_KEY
from emulator.runtime import ConfigPatch
from emulator.state import EmulatorState

__all__ = ["ADMIN_ROUTES"]


def _state(request: Request) -> EmulatorState:
    state: EmulatorState = request.app.state.emulator
    return state


async def ping(request: Request) -> Response:
    """Liveness, and whether this connection's socket has TCP_NODELAY (Nagle off)."""
    transport = request.scope.get(TRANSPORT_SCOPE_KEY)
    sock = transport.get_extra_info("socket") if transport is not None else None
    nodelay = sock is not None and bool(sock.getsockopt(IPPROTO_TCP, TCP_NODELAY))
    return Response(b'{"ok":true,"tcp_nodelay":%s}' % (b"true" if nodelay else b"false"),
                    media_type="application/json")


async def stats(request: Request) -> Response:
    return JSONResponse(_state(request).stats())


async def calls(request: Request) -> Response:
    """Every call logged, oldest first; `?key=`, `?action=`, `?outcome=` filter them."""
    wanted = {name: request.query_params[name] for name in ("key", "action", "outcome")
              if name in request.query_params}
    selected = [call for call in _state(request).calls
                if all(call[name] == value for name, value in wanted.items())]
    return JSONResponse(selected)


def _config_view(state: EmulatorState) -> dict[str, Any]:
    return {**state.config.as_dict(), "keys": sorted(state.keys),
            "credits": {key: ledger.credits_left for key, ledger in state.ledgers.items()},
            "default_credits": state.default_credits}


async def get_config(request: Request) -> Response:
    return JSONResponse(_config_view(_state(request)))


async def set_config(request: Request) -> Response:
    """Apply a partial config; 400 with the reason when a field is wrong."""
    try:
        patch = ConfigPatch.model_validate(json.loads(await request.body()))
    except ValueError as exc:  # ValidationError and JSONDecodeError are both ValueErrors
        reason = _first_error(exc) if isinstance(exc, ValidationError) else "not JSON"
        return JSONResponse({"error": reason}, status_code=400)
    state = _state(request)
    state.apply(patch)
    return JSONResponse(_config_view(state))


def _first_error(exc: ValidationError) -> str:
    first = exc.errors()[0]
    return f"{'.'.join(str(part) for part in first['loc'])}: {first['msg']}"


async def reset(request: Request) -> Response:
    """Forget calls, stats and tasks; back to the configuration the server started with."""
    _state(request).reset()
    return Response(b'{"ok":true}', media_type="application/json")


ADMIN_ROUTES = [
    Route("/_admin/ping", ping, methods=["GET"]),
    Route("/_admin/stats", stats, methods=["GET"]),
    Route("/_admin/calls", calls, methods=["GET"]),
    Route("/_admin/config", get_config, methods=["GET"]),
    Route("/_admin/config", set_config, methods=["POST"]),
    Route("/_admin/reset", reset, methods=["POST"]),
]
