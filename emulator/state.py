"""Everything the running server knows: keys, runtime config, per-key ledgers, calls, tasks."""

from __future__ import annotations

import random
import time
from collections import deque
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from emulator.ledger import KeyLedger
from emulator.runtime import ConfigPatch, RuntimeConfig
from emulator.settings import EmulatorSettings
from emulator.tasks import TaskStore

__all__ = ["EmulatorState"]


class EmulatorState:
    """The server's memory; reset() brings it back to the settings it started with."""

    def __init__(self, settings: EmulatorSettings) -> None:
        self.settings = settings
        self.render_pool = ThreadPoolExecutor(settings.render_threads, "render")
        # Accepted images are decoded here, one at a time, while their tasks run.
        self.decode_pool = ThreadPoolExecutor(1, "decode")
        self.reset()

    def reset(self) -> None:
        settings = self.settings
        self.config = RuntimeConfig.from_settings(settings)
        self.keys: dict[str, str] = settings.key_pairs()
        self.default_credits: int | None = settings.credits
        self.ledgers: dict[str, KeyLedger] = {}
        self.calls: deque[dict[str, Any]] = deque(maxlen=settings.max_calls_logged)
        self.tasks = TaskStore()
        self.rng = random.Random(settings.seed)

    def ledger(self, key: str) -> KeyLedger:
        ledger = self.ledgers.get(key)
        if ledger is None:
            credits = self.default_credits if key in self.keys else None
            ledger = self.ledgers[key] = KeyLedger(credits)
        return ledger

    def record(self, call: dict[str, Any], now: float) -> None:
        """Log one call (`t`, `key`, `action`, `outcome`, ...) and count it for its key."""
        self.calls.append(call)
        self.ledger(call["key"]).count_call(call["action"], call["outcome"], now)

    def apply(self, patch: ConfigPatch) -> None:
        """Change the running configuration; only what the patch sets."""
        self.config = self.config.patched(patch)
        if patch.keys:
            self.keys.update(patch.keys)
        if "credits" in patch.model_fields_set:
            self._set_credits(patch.credits)

    def _set_credits(self, credits: int | dict[str, int | None] | None) -> None:
        if isinstance(credits, dict):
            for key, left in credits.items():
                self.ledger(key).credits_left = left
            return
        self.default_credits = credits
        for key in self.keys:
            self.ledger(key).credits_left = credits

    def dice(self, fraction: float) -> bool:
        """True for about `fraction` of the calls."""
        return fraction > 0 and self.rng.random() < fraction

    def stats(self) -> dict[str, Any]:
        return {
            "keys": {key: ledger.as_dict() for key, ledger in self.ledgers.items()},
            "tasks": len(self.tasks),
            "stored_bytes": self.tasks.stored_bytes,
            "time": time.time(),
        }
