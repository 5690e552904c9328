"""`python -m bench [NAME ...]`: run every benchmark module's main(), or only the named ones."""

from __future__ import annotations

import importlib
import sys
import time

from bench import available


def main(argv: list[str]) -> int:
    names = argv or available()
    unknown = sorted(set(names) - set(available()))
    if unknown:
        print(f"no such benchmark: {', '.join(unknown)} (have: {', '.join(available())})")
        return 2
    for name in names:
        print(f"== bench {name} ==", flush=True)
        started = time.perf_counter()
        importlib.import_module(f"bench.{name}").main()
        print(f"== {name} took {time.perf_counter() - started:.1f} s ==\n", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
