"""Per-PublicKey bookkeeping: calls by action and outcome, sliding windows, credits.

Each window is a deque of monotonic times pruned from the left, so a call costs O(1) amortised.
"""

from __future__ import annotations

from collections import defaultdict, deque
from typing import Any

__all__ = ["STATS_WINDOW_S", "KeyLedger", "SlidingWindow"]

STATS_WINDOW_S = 1.0  # the stats report the busiest one-second window


class SlidingWindow:
    """Times of the events of the last `window_s` seconds, and the most ever seen at once."""

    __slots__ = ("_times", "max_count")

    def __init__(self) -> None:
        self._times: deque[float] = deque()
        self.max_count = 0

    def count(self, now: float, window_s: float) -> int:
        """Events in the half-open window (now - window_s, now]."""
        times = self._times
        while times and times[0] <= now - window_s:
            times.popleft()
        return len(times)

    def add(self, now: float, window_s: float) -> None:
        # The busiest window always ends at an event, so checking at each event finds it.
        count = self.count(now, window_s) + 1
        self._times.append(now)
        if count > self.max_count:
            self.max_count = count

    def oldest(self) -> float | None:
        return self._times[0] if self._times else None


class KeyLedger:
    """What one PublicKey did: every call counted, the limiter's window, credits."""

    __slots__ = (
        "admitted",
        "calls",
        "credits_left",
        "credits_spent",
        "downloads",
        "downloads_refused",
        "limiter",
        "seen",
        "slow_answers",
    )

    def __init__(self, credits_left: int | None) -> None:
        self.calls: defaultdict[str, defaultdict[str, int]] = defaultdict(lambda: defaultdict(int))
        self.seen = SlidingWindow()  # every call carrying this key (1 s windows)
        self.admitted = SlidingWindow()  # calls the rate limiter let through (1 s windows)
        self.limiter = SlidingWindow()  # the same calls, in the limiter's own window
        self.credits_left = credits_left
        self.credits_spent = 0
        self.slow_answers = 0
        self.downloads = 0
        self.downloads_refused = 0

    def count_call(self, action: str, outcome: str, now: float) -> None:
        self.calls[action][outcome] += 1
        self.seen.add(now, STATS_WINDOW_S)

    def admit(self, now: float, window_s: float, capacity: int | None) -> float | None:
        """Admit a call (None) or refuse it, returning the seconds until a slot frees up."""
        if capacity is not None and self.limiter.count(now, window_s) >= capacity:
            oldest = self.limiter.oldest()
            return window_s if oldest is None else max(0.0, oldest + window_s - now)
        self.limiter.add(now, window_s)
        self.admitted.add(now, STATS_WINDOW_S)
        return None

    def spend_credit(self) -> bool:
        """Take one credit; False when none is left."""
        if self.credits_left is not None:
            if self.credits_left <= 0:
                return False
            self.credits_left -= 1
        self.credits_spent += 1
        return True

    def as_dict(self) -> dict[str, Any]:
        return {
            "calls": {action: dict(outcomes) for action, outcomes in self.calls.items()},
            "max_calls_in_window": self.seen.max_count,
            "max_admitted_in_window": self.admitted.max_count,
            "credits_spent": self.credits_spent,
            "credits_left": self.credits_left,
            "slow_answers": self.slow_answers,
            "downloads": self.downloads,
            "downloads_refused": self.downloads_refused,
        }
