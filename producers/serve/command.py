"""`cutout serve [--host H] [--port N] [--insecure-local]`: the HTTP service under uvicorn.

It refuses to start without CUTOUT_SERVE_TOKENS, unless bound to 127.0.0.1 with
--insecure-local (then nothing asks for a token). Prints `cutout serve listening on URL` once
it accepts connections (with --port 0, the port it was given).
"""

from __future__ import annotations

import asyncio
import contextlib
import sys
from typing import TYPE_CHECKING

import click

from producers.startup import load_settings

if TYPE_CHECKING:
    from config import Settings

__all__ = ["LOCAL_HOST", "READY_PREFIX", "serve"]

READY_PREFIX = "cutout serve listening on "
LOCAL_HOST = "127.0.0.1"
EXIT_REFUSED = 2


@click.command()
@click.option("--host", default=LOCAL_HOST, show_default=True, help="The address to bind.")
@click.option("--port", default=8080, show_default=True, type=click.IntRange(0, 65535),
              help="The port (0: a free one, printed).")
@click.option("--insecure-local", is_flag=True,
              help="Serve without tokens; only with --host 127.0.0.1.")
def serve(host: str, port: int, insecure_local: bool) -> None:
    """Serve the HTTP intake, status, OpenAPI document and Prometheus metrics."""
    settings = load_settings()
    tokens = [t.get_secret_value() for t in settings.serve_tokens]
    if not tokens and not (insecure_local and host == LOCAL_HOST):
        click.echo("cutout serve: refused: set CUTOUT_SERVE_TOKENS (comma-separated bearer "
                   "tokens), or run on 127.0.0.1 with --insecure-local", err=True)
        sys.exit(EXIT_REFUSED)
    from config.logs import configure

    configure(settings)
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(_serve(settings, tokens, host, port))


async def _serve(settings: Settings, tokens: list[str], host: str, port: int) -> None:
    import uvicorn

    from producers.serve.app import create_app

    config = uvicorn.Config(create_app(settings, tokens), host=host, port=port,
                            log_config=None, server_header=False, proxy_headers=False,
                            lifespan="off", ws="none", timeout_graceful_shutdown=5)
    server = uvicorn.Server(config)
    running = asyncio.create_task(server.serve())
    while not server.started:
        if running.done():
            await running  # startup failed: raise its error
            raise SystemExit(1)
        await asyncio.sleep(0.01)
    bound_host, bound_port = server.servers[0].sockets[0].getsockname()[:2]
    shown = f"[{bound_host}]" if ":" in bound_host else bound_host
    click.echo(f"{READY_PREFIX}http://{shown}:{bound_port}")
    sys.stdout.flush()
    await running
