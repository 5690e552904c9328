"""Run the app under uvicorn, print the ready line, and let handlers drop a connection.

asyncio sets TCP_NODELAY on every TCP transport it creates (base_events._set_nodelay), so
kept-alive calls are not held back by Nagle's algorithm; `GET /_admin/ping` reports it.
"""

from __future__ import annotations

import asyncio
import sys
from typing import Any

import uvicorn

# h11, the parser this was tested with (httptools' protocol is not: the drop fault relies on
# how the protocol reports a lost connection to a running request).
from uvicorn.protocols.http.h11_impl import H11Protocol

from emulator.api import TRANSPORT_SCOPE_KEY
from emulator.app import create_app
from emulator.settings import EmulatorSettings

__all__ = ["READY_PREFIX", "TransportAwareProtocol", "serve"]

READY_PREFIX = "emulator listening on "


class TransportAwareProtocol(H11Protocol):
    """uvicorn's HTTP protocol, with the connection's transport in each request's scope, so a
    fault can close the socket without an answer."""

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        app = self.app

        async def app_with_transport(scope: Any, receive: Any, send: Any) -> None:
            scope[TRANSPORT_SCOPE_KEY] = transport
            await app(scope, receive, send)

        self.app = app_with_transport


async def serve(settings: EmulatorSettings) -> None:
    """Serve until interrupted; print `emulator listening on http://HOST:PORT` once ready."""
    config = uvicorn.Config(
        create_app(settings),
        host=settings.host,
        port=settings.port,
        http=TransportAwareProtocol,
        ws="none",
        lifespan="off",
        access_log=False,
        proxy_headers=False,
        server_header=False,
        date_header=False,
        log_level=settings.log_level,
        timeout_keep_alive=75,  # longer than clients keep idle pooled connections
        timeout_graceful_shutdown=1,  # a held-back (slow) answer must not delay a stop
        backlog=4096,
    )
    server = uvicorn.Server(config)
    running = asyncio.create_task(server.serve())
    while not server.started:
        if running.done():
            await running  # startup failed: raise its error
            raise SystemExit(1)
        await asyncio.sleep(0.01)
    host, port = server.servers[0].sockets[0].getsockname()[:2]
    print(f"{READY_PREFIX}http://{_url_host(host)}:{port}", flush=True)
    if not settings.keys:
        print("emulator: no key pairs configured (--key PUBLIC:PRIVATE): every call gets 110",
              file=sys.stderr, flush=True)
    await running


def _url_host(host: str) -> str:
    return f"[{host}]" if ":" in host else host
