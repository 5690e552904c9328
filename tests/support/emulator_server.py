"""The local API server as a real subprocess on a free port, for tests that speak HTTP to it.

`emulator_process` (session) starts one; `emulator` (per test) resets it to the defaults below and
returns it. Tests that need other settings call `emulator.configure(...)`; the next test's reset
undoes it.
"""

from __future__ import annotations

import base64
import io
import os
import selectors
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import requests
from PIL import Image

from picpik.signing import sign

__all__ = [
    "EmulatorProcess",
    "emulator",
    "emulator_process",
    "image_bytes",
    "image_data_uri",
    "noise_png_uri",
]

REPO_ROOT = Path(__file__).resolve().parents[2]
# emulator.server.READY_PREFIX, not imported: that would load uvicorn into every test run.
READY_PREFIX = "emulator listening on "
START_TIMEOUT_S = 20.0


@dataclass
class EmulatorProcess:
    """One `python -m emulator` process the suite owns (default: fast timing, no rate limit)."""

    public_key: str = "test-public"
    private_key: str = "test-private"
    queue_s: float = 0.05
    run_s: float = 0.1
    port: int = 0  # 0: a free port, kept for restart()
    extra_args: list[str] = field(default_factory=list)
    base_url: str = ""
    process: subprocess.Popen[str] | None = None
    log_path: Path | None = None  # the server's stderr
    session: requests.Session = field(default_factory=requests.Session)

    def args(self) -> list[str]:
        return [sys.executable, "-m", "emulator", "--host", "127.0.0.1", "--port", str(self.port),
                "--key", f"{self.public_key}:{self.private_key}", "--rate-limit", "0",
                "--queue-s", str(self.queue_s), "--run-s", str(self.run_s), *self.extra_args]

    def start(self) -> None:
        # A clean environment for the emulator's own settings: only the flags above count.
        env = {k: v for k, v in os.environ.items() if not k.startswith("CUTOUT_EMULATOR_")}
        handle, name = tempfile.mkstemp(prefix="emulator-", suffix=".log")
        self.log_path = Path(name)
        with os.fdopen(handle, "w") as log:
            self.process = subprocess.Popen(self.args(), cwd=REPO_ROOT, env=env, text=True,
                                            stdout=subprocess.PIPE, stderr=log)
        self.base_url = self._wait_for_ready_line()
        self.port = int(self.base_url.rsplit(":", 1)[1])

    def log(self) -> str:
        """What the server wrote on stderr (uvicorn's warnings and errors)."""
        return self.log_path.read_text(errors="replace") if self.log_path else ""

    def _wait_for_ready_line(self) -> str:
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
                    if not line:  # EOF: the process died
                        break
        finally:
            selector.close()
        log = self.log()
        self.stop()
        raise RuntimeError(f"the local API server did not start; its stderr:\n{log[-4000:]}")

    def stop(self, *, crash: bool = False) -> None:
        """SIGTERM (or SIGKILL with `crash=True`), then wait for the process to end."""
        if self.process is None:
            return
        if crash:
            self.process.kill()
        else:
            self.process.terminate()
        try:
            self.process.wait(timeout=5)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        if self.process.stdout is not None:
            self.process.stdout.close()
        self.process = None
        self.session.close()
        if self.log_path is not None:
            self.log_path.unlink(missing_ok=True)

    def _admin(self, method: str, path: str, json: Any = None) -> Any:
        response = self.session.request(method, f"{self.base_url}/_admin/{path}", json=json,
                                        timeout=10)
        response.raise_for_status()
        return response.json()

    def stats(self) -> dict[str, Any]:
        result: dict[str, Any] = self._admin("GET", "stats")
        return result

    def key_stats(self, public_key: str | None = None) -> dict[str, Any]:
        """The stats of one key (the default key when None); empty counts if it made no call."""
        keys: dict[str, Any] = self.stats()["keys"]
        return keys.get(public_key or self.public_key, {"calls": {}, "max_calls_in_window": 0,
                                                       "credits_spent": 0})

    def calls(self, **filters: str) -> list[dict[str, Any]]:
        response = self.session.get(f"{self.base_url}/_admin/calls", params=filters, timeout=10)
        response.raise_for_status()
        result: list[dict[str, Any]] = response.json()
        return result

    def paid_by_job(self) -> Counter[str]:
        """RemoveBackground calls the API acted on (and billed), by request_uuid (the job id):
        answered, or processed and then dropped or held back."""
        acted = [c for c in self.calls(action="RemoveBackground")
                 if c["outcome"] in ("ok", "fault_drop_after")]
        return Counter(c["request_uuid"] for c in acted)

    def configure(self, **partial: Any) -> dict[str, Any]:
        """Change the running server (see docs/emulator.md for the fields)."""
        result: dict[str, Any] = self._admin("POST", "config", json=partial)
        return result

    def call(self, action: str, params: dict[str, Any] | None = None, *,
             private_key: str | None = None, timeout: float = 10) -> requests.Response:
        """POST one API call signed with `picpik.signing.sign` (the default key pair)."""
        body = {"Action": action, "PublicKey": self.public_key, **(params or {})}
        body["Signature"] = sign(body, private_key or self.private_key)
        return self.session.post(f"{self.base_url}/", json=body, timeout=timeout)

    def reset(self) -> None:
        """Calls, stats and tasks forgotten; configuration back to the start-up flags."""
        self._admin("POST", "reset")

    def restart(self) -> None:
        """Stop and start again on the same port (an outage); everything it knew is lost."""
        self.stop()
        self.session = requests.Session()
        self.start()

    def __enter__(self) -> EmulatorProcess:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def image_bytes(width: int = 64, height: int = 48, fmt: str = "PNG") -> bytes:
    """A small real image, one flat colour, in Pillow format `fmt`."""
    buffer = io.BytesIO()
    Image.new("RGB", (width, height), (200, 40, 40)).save(buffer, format=fmt)
    return buffer.getvalue()


def image_data_uri(width: int = 64, height: int = 48, fmt: str = "PNG") -> str:
    """A small real image as the data URI a RawImage carries."""
    encoded = base64.b64encode(image_bytes(width, height, fmt)).decode()
    return f"data:{Image.MIME[fmt]};base64,{encoded}"


def noise_png_uri(side: int) -> str:
    """A PNG of random pixels as a data URI: it does not compress, so the body is large (side
    400: about 650 kB of base64; side 600: about 1.4 MB)."""
    buffer = io.BytesIO()
    Image.frombytes("RGB", (side, side), os.urandom(side * side * 3)).save(buffer, "PNG")
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode()


_shared: list[EmulatorProcess] = []  # one process, however many modules import the fixture
_users = [0]


@pytest.fixture(scope="session")
def emulator_process() -> Iterator[EmulatorProcess]:
    if not _shared:
        process = EmulatorProcess()
        process.start()
        _shared.append(process)
    _users[0] += 1
    yield _shared[0]
    _users[0] -= 1
    if _users[0] == 0:
        _shared.pop().stop()


@pytest.fixture
def emulator(emulator_process: EmulatorProcess) -> EmulatorProcess:
    """The session's local API server, reset to its defaults for this test."""
    emulator_process.reset()
    return emulator_process
