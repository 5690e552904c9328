"""For `python -m bench cost`: the worker processes' own CPU counters, and the summary of the
pool processes' cProfile stats (bench/_profiled.py) by stage and by module."""

from __future__ import annotations

import os
import pstats
import re
from collections import defaultdict
from collections.abc import Iterable
from pathlib import Path

__all__ = ["PROFILE_PREFIX", "StageShare", "cpu_s", "module_shares", "stage_shares", "worker_cpu_s"]

PROFILE_PREFIX = "cutout-profile-"  # $TMPDIR/<prefix><pid>.prof, by bench/_profiled.py

# A stage's CPU is the cumulative time of the functions that do it (none calls another).
STAGES: dict[str, tuple[tuple[str, str], ...]] = {
    "fetch and image checks": (("tasks/inputs/intake.py", "load_image"),),
    "encode (base64) and sign": (("picpik/body.py", "_write_base64"),
                                 ("picpik/signing.py", "sign")),
    "HTTP (requests: API calls, downloads)": (("requests/sessions.py", "request"),
                                              ("picpik/client.py", "send_plain")),
    "Redis commands, all": (("redis/client.py", "execute_command"),
                            ("redis/client.py", "execute")),
    "  of which Lua scripts (ledger, claims, limiter)": (("redis/commands/core.py", "__call__"),),
    "collect (download and save results)": (("tasks/stages/collect.py", "collect_claimed"),),
    "outbox (events stream: metrics, webhooks)": (("tasks/stages/outbox.py", "step"),),
    "Celery: running a task (trace, result, task events)": (("celery/app/trace.py",
                                                             "trace_task"),),
    "events (Celery's task events)": (("celery/events/dispatcher.py", "send"),),
    "logging": (("logging/__init__.py", "handle"),),
}
# Self time by where the code lives, in this order (first match wins).
MODULE_GROUPS = (
    ("celery/events", "Celery events"), ("/celery/", "Celery"), ("/kombu/", "kombu"),
    ("/billiard/", "billiard"), ("/redis/", "redis-py"), ("/requests/", "requests"),
    ("/urllib3/", "urllib3"), ("/PIL/", "Pillow"), ("/pythonjsonlogger/", "logging"),
    ("/logging/", "logging"), ("/json/", "json"), ("/http/", "http.client"),
    ("socket", "sockets"), ("/tasks/store/", "tasks/store (ledger)"),
    ("/tasks/limits/", "tasks/limits"), ("/tasks/stages/", "tasks/stages"),
    ("/tasks/", "tasks (task modules, threads)"), ("/picpik/", "picpik"),
    ("/config/", "config"), ("/pydantic", "pydantic"), ("threading", "threading"),
)

Key = tuple[str, int, str]
Row = tuple[int, int, float, float, dict[Key, tuple[int, int, float, float]]]


def cpu_s(pid: int) -> float:
    """CPU seconds (user + system) the process has used so far (Linux /proc)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _children(pid: int) -> list[int]:
    found: list[int] = []
    for task in Path(f"/proc/{pid}/task").glob("*"):
        try:
            found += [int(c) for c in (task / "children").read_text().split()]
        except OSError:
            continue
    return found


def worker_cpu_s(pids: Iterable[int]) -> tuple[float, float]:
    """CPU seconds of these workers' main processes, and of their pool processes."""
    main = children = 0.0
    for pid in pids:
        main += cpu_s(pid)
        children += sum(cpu_s(child) for child in _children(pid))
    return main, children


def load(paths: Iterable[Path]) -> pstats.Stats | None:
    files = [str(p) for p in paths]
    if not files:
        return None
    return pstats.Stats(*files)


def _rows(stats: pstats.Stats) -> dict[Key, Row]:
    return stats.stats  # type: ignore[attr-defined,no-any-return]


def total_s(stats: pstats.Stats) -> float:
    return sum(row[2] for row in _rows(stats).values())


StageShare = tuple[str, float]


def stage_shares(stats: pstats.Stats) -> list[StageShare]:
    """Each stage's cumulative CPU seconds."""
    rows = _rows(stats)
    shares = []
    for stage, entries in STAGES.items():
        seconds = sum(row[3] for (path, _, func), row in rows.items()
                      if any(path.endswith(file) and func == name for file, name in entries))
        shares.append((stage, seconds))
    return shares


def module_shares(stats: pstats.Stats, top: int = 14) -> list[StageShare]:
    """Self CPU seconds by where the code lives, largest first."""
    groups: dict[str, float] = defaultdict(float)
    for (path, _, func), row in _rows(stats).items():
        groups[_group(path, func)] += row[2]
    return sorted(groups.items(), key=lambda item: -item[1])[:top]


def _group(path: str, func: str) -> str:
    where = path if path != "~" else func
    for needle, name in MODULE_GROUPS:
        if needle in where:
            return name
    if path == "~":  # a builtin: "<method 'x' of 'mod.Type' objects>", "<built-in method x>"
        match = re.search(r"of '([\w.]+)'|built-in method ([\w.]+)", func)
        return f"builtin {next(g for g in match.groups() if g)}" if match else "builtins"
    return "other: " + Path(path).parent.name
