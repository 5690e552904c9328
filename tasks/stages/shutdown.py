"""A call in flight finishes whatever stops the worker (short of SIGKILL).

A warm or soft shutdown that runs out of time stops the pool's processes with SIGTERM. Between
the moment a call starts and the moment its TaskUID is written, that would leave a paid call
without its answer (NEEDS_RECONCILIATION). So the stop signals are held back for that span and
delivered the moment it ends: the process then stops, its message goes back to the queue, and
the next delivery finds the TaskUID and goes on without a second call. A container's stop grace
period must therefore be longer than the soft-shutdown timeout plus one call.
"""

from __future__ import annotations

import signal
import threading
from collections.abc import Iterator
from contextlib import contextmanager

__all__ = ["STOP_SIGNALS", "stop_signals_deferred"]

STOP_SIGNALS = frozenset({signal.SIGTERM, signal.SIGQUIT, signal.SIGINT})


@contextmanager
def stop_signals_deferred() -> Iterator[None]:
    """Hold SIGTERM, SIGQUIT and SIGINT back from this thread for the body's duration."""
    if threading.current_thread() is not threading.main_thread():
        yield  # signals are handled by the main thread only; nothing to hold back here
        return
    old = signal.pthread_sigmask(signal.SIG_BLOCK, STOP_SIGNALS)
    try:
        yield
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, old)
