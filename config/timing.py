"""The timing rules the settings must keep so that no message is delivered twice or lost.

Why: DESIGN.md "Rules the whole system keeps" 3 (nothing accepted is lost) and STACK-NOTES.md
(a countdown longer than the visibility timeout runs twice).
"""

from __future__ import annotations

from config.settings import Settings

__all__ = ["VISIBILITY_MARGIN_S", "TimingError", "max_countdown_s", "timing_problems"]

# Room between the longest countdown and the visibility timeout, for clock skew and queueing.
VISIBILITY_MARGIN_S = 5.0


class TimingError(ValueError):
    """The settings break a timing rule; a message could be delivered twice or lost."""


def max_countdown_s(settings: Settings) -> float:
    """The longest countdown any task may use: well below the visibility timeout."""
    vt, limit = settings.visibility_timeout_s, settings.task_time_limit_s
    return max(1.0, vt - limit - VISIBILITY_MARGIN_S)


def timing_problems(settings: Settings) -> list[str]:
    """Every timing rule the settings break (an empty list when all hold)."""
    vt = settings.visibility_timeout_s
    problems = []
    if vt <= settings.task_time_limit_s + settings.retry_max_delay_s + VISIBILITY_MARGIN_S:
        problems.append(
            f"visibility_timeout_s ({vt}) must exceed task_time_limit_s "
            f"({settings.task_time_limit_s}) + retry_max_delay_s ({settings.retry_max_delay_s})"
            f" + {VISIBILITY_MARGIN_S}"
        )
    if vt <= settings.task_time_limit_s + settings.poll_max_interval_s + VISIBILITY_MARGIN_S:
        problems.append(
            f"visibility_timeout_s ({vt}) must exceed task_time_limit_s + poll_max_interval_s "
            f"({settings.poll_max_interval_s}) + {VISIBILITY_MARGIN_S}"
        )
    fetch_and_call = settings.fetch_timeout_s + settings.connect_timeout_s + settings.read_timeout_s
    if settings.task_time_limit_s <= fetch_and_call:
        problems.append(
            f"task_time_limit_s ({settings.task_time_limit_s}) must exceed fetch_timeout_s + "
            f"connect_timeout_s + read_timeout_s ({fetch_and_call})"
        )
    if settings.lease_s < 3 * 1.0:
        problems.append(f"lease_s ({settings.lease_s}) must be at least 3 s: it is renewed "
                        "every third of itself")
    return problems
