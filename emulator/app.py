"""The ASGI application of the local API server."""

from __future__ import annotations

from starlette.applications import Starlette
from starlette.routing import Route

from emulator.admin import ADMIN_ROUTES
from emulator.api import handle_api
from emulator.results import serve_result
from emulator.settings import EmulatorSettings
from emulator.state import EmulatorState

__all__ = ["create_app"]


def create_app(settings: EmulatorSettings) -> Starlette:
    """A Starlette app with the API on `POST /`, results and admin routes, and fresh state."""
    routes = [
        Route("/", handle_api, methods=["POST"]),
        Route("/results/{token}.png", serve_result, methods=["GET"]),
        *ADMIN_ROUTES,
    ]
    app = Starlette(routes=routes)
    app.state.emulator = EmulatorState(settings)
    return app
