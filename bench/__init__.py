"""Benchmarks: each `bench/<name>.py` has a `main()` that prints its figures and their ratios
against a baseline measured in the same run. Run all with `python -m bench` (`make bench`), one
with `python -m bench NAME`."""

from __future__ import annotations

import pkgutil
from pathlib import Path

__all__ = ["available"]


def available() -> list[str]:
    """The benchmark modules in this package, by name."""
    folder = str(Path(__file__).parent)
    return sorted(info.name for info in pkgutil.iter_modules([folder])
                  if not info.name.startswith("_"))
