"""`celery -A bench._profiled worker`: the pipeline's worker under cProfile (every thread, CPU
time): each pool process from its start, the main process (consumer, collectors, outbox,
upkeep) from the worker's start. Stats go to `$TMPDIR/cutout-profile-<role>-<pid>.prof` as
each process exits. For `python -m bench cost` only: profiling slows everything down, so its
figures are shares of the time, never rates."""

from __future__ import annotations

import cProfile
import functools
import os
import pstats
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

from celery.signals import (
    worker_process_init,
    worker_process_shutdown,
    worker_ready,
    worker_shutdown,
)

from bench._cost_profile import PROFILE_PREFIX

__all__ = ["app"]

_profiles: list[cProfile.Profile] = []


def _profile_this_thread(*_: Any) -> None:
    # This thread's CPU clock, read by whichever thread asks: the stats of a thread still in a
    # call when they are written (from another thread) stay true.
    clock = time.pthread_getcpuclockid(threading.get_ident())
    profile = cProfile.Profile(functools.partial(time.clock_gettime, clock))
    _profiles.append(profile)
    profile.enable()  # replaces this hook for the thread


def _start() -> None:
    # Connected before the pipeline's own handlers (imported below), so the threads they
    # start are profiled too.
    _profiles.clear()  # a pool process starts with its parent's list
    threading.setprofile(_profile_this_thread)
    _profile_this_thread()


def _dump(role: str) -> None:
    if not _profiles:
        return
    stats = pstats.Stats(_profiles[0])
    for profile in _profiles[1:]:
        stats.add(profile)
    stats.dump_stats(Path(tempfile.gettempdir()) / f"{PROFILE_PREFIX}{role}-{os.getpid()}.prof")


@worker_process_init.connect
def _pool_start(**_: Any) -> None:
    sys.setprofile(None)  # forked from a profiled thread: that profile is the parent's
    _start()


@worker_ready.connect
def _main_start(**_: Any) -> None:
    _start()


@worker_process_shutdown.connect
def _pool_dump(**_: Any) -> None:
    _dump("pool")


@worker_shutdown.connect
def _main_dump(**_: Any) -> None:
    _dump("main")


from tasks import app  # noqa: E402  (after the hooks above)
