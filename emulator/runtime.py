"""The part of the configuration that `POST /_admin/config` may change while the server runs."""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field, fields, replace
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from emulator.settings import EmulatorSettings

__all__ = ["ConfigPatch", "Faults", "RuntimeConfig"]


@dataclass(frozen=True, slots=True)
class Faults:
    """Fractions of calls that fail on purpose, and how slow a slow answer is."""

    error_5xx: float = 0.0
    drop: float = 0.0
    drop_after: float = 0.0
    throttle: float = 0.0
    slow_rate: float = 0.0
    slow_s: float = 0.0
    task_error: float = 0.0
    result_5xx: float = 0.0
    result_slow_s: float = 0.0
    status_after: float = 0.0
    status_after_code: int = 502
    bad_detail: float = 0.0


@dataclass(frozen=True, slots=True)
class RuntimeConfig:
    """Rate limit, task timing, result lifetime and faults in force right now."""

    rate_limit: float = 0.0
    rate_window_s: float = 1.0
    throttle_http_status: int = 200
    queue_s: float = 0.5
    run_s: float = 1.0
    result_ttl_s: float = 24 * 3600.0
    faults: Faults = field(default_factory=Faults)

    @classmethod
    def from_settings(cls, settings: EmulatorSettings) -> RuntimeConfig:
        """The settings' values, by name: each field here, and `fault_<name>` for each fault."""
        faults = Faults(**{f.name: getattr(settings, f"fault_{f.name}") for f in fields(Faults)})
        values = {f.name: getattr(settings, f.name) for f in fields(cls) if f.name != "faults"}
        return cls(faults=faults, **values)

    @property
    def window_capacity(self) -> int | None:
        """Calls admitted per key in one window; None when unlimited."""
        if self.rate_limit <= 0:
            return None
        # A fractional product rounds down, but one call per window is always allowed.
        return max(1, math.floor(self.rate_limit * self.rate_window_s + 1e-9))

    def patched(self, patch: ConfigPatch) -> RuntimeConfig:
        """A copy with the fields the patch sets."""
        changes = patch.model_dump(exclude_none=True, exclude={"credits", "keys", "faults"})
        faults = self.faults
        if patch.faults is not None:
            faults = replace(faults, **patch.faults.model_dump(exclude_none=True))
        return replace(self, faults=faults, **changes)

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


Fraction = Annotated[float, Field(ge=0, le=1)]
NonNegative = Annotated[float, Field(ge=0)]


class _Patch(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class FaultsPatch(_Patch):
    error_5xx: Fraction | None = None
    drop: Fraction | None = None
    drop_after: Fraction | None = None
    throttle: Fraction | None = None
    slow_rate: Fraction | None = None
    slow_s: NonNegative | None = None
    task_error: Fraction | None = None
    result_5xx: Fraction | None = None
    result_slow_s: NonNegative | None = None
    status_after: Fraction | None = None
    status_after_code: Literal[500, 502, 503, 504] | None = None
    bad_detail: Fraction | None = None


class ConfigPatch(_Patch):
    """The body of `POST /_admin/config`: only the fields given change."""

    rate_limit: NonNegative | None = None
    rate_window_s: Annotated[float, Field(gt=0)] | None = None
    throttle_http_status: Literal[200, 429] | None = None
    queue_s: NonNegative | None = None
    run_s: NonNegative | None = None
    result_ttl_s: NonNegative | None = None
    # Credits left: one number for every key, or per PublicKey; null = unlimited.
    credits: Annotated[int, Field(ge=0)] | dict[str, Annotated[int, Field(ge=0)] | None] | None = (
        None
    )
    # Extra key pairs, PublicKey -> PrivateKey, added to the configured ones.
    keys: dict[str, str] | None = None
    faults: FaultsPatch | None = None
