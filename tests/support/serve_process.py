"""`cutout serve` as a real subprocess on a free port: tests and benchmarks talk HTTP to it."""

from __future__ import annotations

import os
import selectors
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import requests

__all__ = ["ServeProcess"]

REPO_ROOT = Path(__file__).resolve().parents[2]
CUTOUT = Path(sys.executable).parent / "cutout"
READY_PREFIX = "cutout serve listening on "  # producers.serve.command.READY_PREFIX
START_TIMEOUT_S = 30.0


@dataclass
class ServeProcess:
    """One `cutout serve --port 0` with this environment (CUTOUT_* settings)."""

    env: dict[str, str]
    args: list[str] = field(default_factory=list)
    token: str | None = None
    base_url: str = ""
    process: subprocess.Popen[str] | None = None
    log_path: Path | None = None
    session: requests.Session = field(default_factory=requests.Session)

    def start(self) -> None:
        handle, name = tempfile.mkstemp(prefix="serve-", suffix=".log")
        self.log_path = Path(name)
        with os.fdopen(handle, "w") as log:
            self.process = subprocess.Popen(
                [str(CUTOUT), "serve", "--port", "0", *self.args], cwd=REPO_ROOT, env=self.env,
                text=True, stdout=subprocess.PIPE, stderr=log)
        self.base_url = self._ready_url()
        if self.token:
            self.session.headers["Authorization"] = f"Bearer {self.token}"

    def _ready_url(self) -> str:
        assert self.process is not None and self.process.stdout is not None
        selector = selectors.DefaultSelector()
        selector.register(self.process.stdout, selectors.EVENT_READ)
        deadline = time.monotonic() + START_TIMEOUT_S
        try:
            while time.monotonic() < deadline:
                if selector.select(timeout=0.1):
                    line = self.process.stdout.readline()
                    if line.startswith(READY_PREFIX):
                        return line[len(READY_PREFIX):].strip()
                    if not line:
                        break
        finally:
            selector.close()
        log = self.log()
        self.stop()
        raise RuntimeError(f"cutout serve did not start:\n{log[-3000:]}")

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path else ""

    def url(self, path: str) -> str:
        return f"{self.base_url}{path}"

    def get(self, path: str, **kwargs: Any) -> requests.Response:
        return self.session.get(self.url(path), timeout=30, **kwargs)

    def post(self, path: str, **kwargs: Any) -> requests.Response:
        return self.session.post(self.url(path), timeout=120, **kwargs)

    def stop(self) -> None:
        if self.process is not None:
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
            if self.process.stdout is not None:
                self.process.stdout.close()
            self.process = None
        self.session.close()

    def __enter__(self) -> ServeProcess:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()
        if self.log_path is not None:
            self.log_path.unlink(missing_ok=True)
