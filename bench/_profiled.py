"""`celery -A bench._profiled worker`: the pipeline's worker with every pool process under
cProfile (each of its threads), the stats written to `$TMPDIR/cutout-profile-<pid>.prof` as the
process exits. For `python -m bench cost` only: profiling slows everything down, so its figures
are shares of the time, never rates."""

from __future__ import annotations

import cProfile
import os
import pstats
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

from celery.signals import worker_process_init, worker_process_shutdown

from bench._cost_profile import PROFILE_PREFIX

__all__ = ["app"]

_profiles: list[cProfile.Profile] = []


def _profile_this_thread(*_: Any) -> None:
    profile = cProfile.Profile(time.thread_time)  # CPU time, not time blocked
    _profiles.append(profile)
    profile.enable()  # replaces this hook for the thread


@worker_process_init.connect
def _start(**_: Any) -> None:
    # Connected before the pipeline's own handlers (imported below), so the threads they
    # start are profiled too.
    threading.setprofile(_profile_this_thread)
    _profile_this_thread()


@worker_process_shutdown.connect
def _dump(**_: Any) -> None:
    if not _profiles:
        return
    stats = pstats.Stats(_profiles[0])
    for profile in _profiles[1:]:
        stats.add(profile)
    stats.dump_stats(Path(tempfile.gettempdir()) / f"{PROFILE_PREFIX}{os.getpid()}.prof")


from tasks import app  # noqa: E402  (after the hooks above)
