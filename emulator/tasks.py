"""Accepted RemoveBackground tasks: their status, computed from timestamps, and their results.

A task is Queuing for `queue_s`, Running for `run_s`, then Finished (or Error when a fault said
so). No thread moves it along: the status is read off the clock when someone asks.
"""

from __future__ import annotations

import asyncio
import secrets
from collections import deque
from collections.abc import Iterator
from concurrent.futures import Future
from dataclasses import dataclass, field

from picpik.models import RemoveBackgroundOptions

__all__ = ["DECODE_ERROR_CODE", "TASK_ERROR_CODE", "Task", "TaskError", "TaskStore",
           "new_task_uid"]

TASK_ERROR_CODE = 1001  # ErrorCode of a task that ends in Error (the injected fault)
DECODE_ERROR_CODE = 1002  # ErrorCode of a task whose image could not be decoded


@dataclass(frozen=True, slots=True)
class TaskError:
    """Why a task ends in Error: its ErrorCode and ErrorMassage."""

    code: int
    message: str


def new_task_uid() -> str:
    """A 20-character id shaped like the docs' `cktlm6lrh4xxx8ng9nf0`."""
    return secrets.token_hex(10)


@dataclass(slots=True, eq=False)
class Task:
    """One accepted RemoveBackground call."""

    uid: str
    key: str
    running_at: float  # monotonic: when it leaves Queuing
    done_at: float  # monotonic: when it leaves Running
    error: TaskError | None  # set: the task ends in Error
    options: RemoveBackgroundOptions
    image: bytes | None  # the input, dropped once rendered or expired
    token: str = field(default_factory=lambda: secrets.token_urlsafe(16))
    png: bytes | None = None
    rendering: asyncio.Future[bytes] | None = None
    gone: bool = False  # expired or evicted: its result is no longer served
    malformed: bool = False  # its ListTasksDetails entry is unreadable (fault bad_detail)
    # The whole image being decoded, off the call's path: why it cannot be, or None.
    decoding: Future[str | None] | None = None

    def status(self, now: float) -> str:
        if now >= self.done_at:
            if self.decoding is not None:
                if not self.decoding.done():
                    return "Running"  # still being processed, as a busy service would be
                self._settle_decoding(self.decoding.result())
            return "Error" if self.error else "Finished"
        return "Running" if now >= self.running_at else "Queuing"

    def _settle_decoding(self, problem: str | None) -> None:
        if problem and self.error is None:
            self.error = TaskError(DECODE_ERROR_CODE, f"the image could not be decoded: {problem}")
        self.decoding = None

    def stored_bytes(self) -> int:
        return len(self.image or b"") + len(self.png or b"")

    def expired(self, now: float, ttl_s: float) -> bool:
        return self.gone or now > self.done_at + ttl_s


class TaskStore:
    """Every task by TaskUID and by result token, plus what each key still has in flight."""

    def __init__(self) -> None:
        self._by_uid: dict[str, Task] = {}
        self._by_token: dict[str, Task] = {}
        self._in_flight: dict[str, dict[str, Task]] = {}
        self._holding: deque[Task] = deque()  # tasks that still hold bytes, oldest first
        self.stored_bytes = 0

    def add(self, task: Task) -> None:
        self._by_uid[task.uid] = task
        self._by_token[task.token] = task
        self._in_flight.setdefault(task.key, {})[task.uid] = task
        self._holding.append(task)
        self.stored_bytes += task.stored_bytes()

    def get(self, uid: str) -> Task | None:
        return self._by_uid.get(uid)

    def by_token(self, token: str) -> Task | None:
        return self._by_token.get(token)

    def in_flight(self, key: str, now: float) -> list[str]:
        """TaskUIDs of `key` still Queuing or Running; finished ones are dropped from the index."""
        tasks = self._in_flight.get(key, {})
        for uid in [uid for uid, task in tasks.items()
                    if task.status(now) not in ("Queuing", "Running")]:
            del tasks[uid]
        return list(tasks)

    def rendered(self, task: Task, png: bytes) -> None:
        """Keep the result, drop the input it was made from."""
        before = task.stored_bytes()
        task.png, task.image = png, None
        self.stored_bytes += task.stored_bytes() - before

    def sweep(self, now: float, ttl_s: float, max_bytes: int) -> None:
        """Forget the bytes of expired tasks, and of the oldest ones while over `max_bytes`."""
        holding = self._holding
        while holding and (holding[0].expired(now, ttl_s) or self.stored_bytes > max_bytes):
            self._forget_bytes(holding.popleft())

    def _forget_bytes(self, task: Task) -> None:
        self.stored_bytes -= task.stored_bytes()
        task.image = task.png = None
        task.gone = True

    def __iter__(self) -> Iterator[Task]:
        return iter(self._by_uid.values())

    def __len__(self) -> int:
        return len(self._by_uid)
