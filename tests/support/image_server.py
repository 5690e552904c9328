"""A tiny threaded HTTP server on loopback for the fetch tests and the hostile corpus: files
from a directory, plus routes that misbehave on purpose."""

from __future__ import annotations

import contextlib
import http.server
import socket
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

__all__ = ["ImageServer"]


class _Handler(http.server.BaseHTTPRequestHandler):
    server: _Server

    def do_GET(self) -> None:
        split = urlsplit(self.path)
        if split.path in ("/redirect", "/loop"):
            target = parse_qs(split.query)["to"][0] if split.path == "/redirect" else "/loop"
            self._answer(302, Location=target)
        elif split.path.startswith("/status/"):
            self._answer(int(split.path.rsplit("/", 1)[1]))
        elif split.path in ("/endless", "/slow"):
            self._stream(one_byte_a_second=split.path == "/slow")
        else:
            if self.server.on_file is not None:
                self.server.on_file(split.path)
            self._file(self.server.root / split.path.lstrip("/"))

    def _answer(self, status: int, **headers: str) -> None:
        self.send_response(status)
        for name, value in {"Content-Length": "0", **headers}.items():
            self.send_header(name, value)
        self.end_headers()

    def _stream(self, *, one_byte_a_second: bool) -> None:
        self.send_response(200)
        self.end_headers()
        with contextlib.suppress(OSError):  # the client hangs up: the point
            for _ in range(10_000):
                self.wfile.write(b"x" * (1 if one_byte_a_second else 65536))
                self.wfile.flush()
                if one_byte_a_second:
                    time.sleep(1)

    def _file(self, path: Path) -> None:
        if not path.is_file():
            self.send_error(404)
            return
        data = path.read_bytes()
        self.send_response(200)
        self.send_header("Content-Type", "application/octet-stream")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *args: Any) -> None:
        pass


class _Server(http.server.ThreadingHTTPServer):
    daemon_threads = True
    root: Path
    on_file: Callable[[str], None] | None = None

    def server_bind(self) -> None:
        # Without TCP_NODELAY every kept-alive answer waits ~40 ms (STACK-NOTES).
        self.socket.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        super().server_bind()


class ImageServer:
    """Serves files from a directory, and: /redirect?to=URL, /loop (redirects to itself),
    /status/N (an empty answer with status N), /endless (no length, never ends), /slow (one
    byte a second). `host` may be another loopback address (127.0.0.2), so that a worker can be
    allowed to reach this server while 127.0.0.1 stays refused. `server.on_file(path)` runs
    before a file is served: what "meanwhile" happens in a test."""

    def __init__(self, directory: Path, host: str = "127.0.0.1") -> None:
        self.host = host
        self.server = _Server((host, 0), _Handler)
        self.server.root = directory
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.server.server_address[1]}"

    def __enter__(self) -> ImageServer:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()
