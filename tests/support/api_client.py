"""Helpers for the API client's tests: a client aimed at the local API server, small images."""

from __future__ import annotations

import time
from typing import Any

from pydantic import SecretStr

from config.settings import Settings
from picpik.client import PicpikClient
from picpik.models import TaskDetail
from tests.support.emulator_server import EmulatorProcess, image_bytes
from tests.support.redis_server import free_port

__all__ = ["UUID", "calls_made", "client_for", "free_port", "png", "wait_until_done"]

UUID = "0b7d5c1e-6f0a-4c1e-9d3b-2a4f6e8c0d11"


def png(width: int = 24, height: int = 16) -> bytes:
    return image_bytes(width, height, "PNG")


def client_for(emulator: EmulatorProcess, **overrides: Any) -> PicpikClient:
    values: dict[str, Any] = {
        "api_base_url": emulator.base_url,
        "public_key": emulator.public_key,
        "private_key": SecretStr(emulator.private_key),
        "connect_timeout_s": 2.0,
        "read_timeout_s": 10.0,
        **overrides,
    }
    return PicpikClient(Settings(_env_file=None, **values))


def calls_made(emulator: EmulatorProcess, action: str | None = None) -> int:
    """Every call the server saw (for one Action, if given), whatever its outcome."""
    total = 0
    for key in emulator.stats()["keys"].values():
        for name, outcomes in key["calls"].items():
            if action is None or name == action:
                total += sum(outcomes.values())
    return total


def wait_until_done(client: PicpikClient, task_uid: str) -> TaskDetail:
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        details = client.list_tasks_details([task_uid])
        if details and details[0].state != "pending":
            return details[0]
        time.sleep(0.05)
    raise AssertionError(f"task {task_uid} still pending after 20 s")
