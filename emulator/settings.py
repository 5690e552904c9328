"""The local API server's settings: `CUTOUT_EMULATOR_*` variables, overridden by CLI flags.

Every value here is also a runtime default: `POST /_admin/reset` brings the running server back
to exactly these values.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import Field, field_validator
from pydantic_settings import (
    BaseSettings,
    NoDecode,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
)

from config.secret_files import FileSettingsSource

__all__ = ["GATEWAY_STATUSES", "EmulatorSettings", "parse_key_pairs"]

Rate = Annotated[float, Field(ge=0, le=1)]
GATEWAY_STATUSES = frozenset({500, 502, 503, 504})


class EmulatorSettings(BaseSettings):
    """What the local API server starts with."""

    # hide_input_in_errors: a ValidationError would otherwise quote every key pair, PrivateKeys
    # included, when one of them is malformed.
    model_config = SettingsConfigDict(env_prefix="CUTOUT_EMULATOR_", extra="ignore", frozen=True,
                                      hide_input_in_errors=True)

    host: str = "127.0.0.1"
    port: int = Field(default=8000, ge=0, le=65535)  # 0: a free port, printed when ready
    # PUBLIC:PRIVATE pairs; in the environment comma-separated. Never printed.
    keys: Annotated[tuple[str, ...], NoDecode] = Field(default=(), repr=False)
    # Calls admitted per PublicKey in any sliding window of rate_window_s; 0 = unlimited.
    rate_limit: float = Field(default=0.0, ge=0)
    rate_window_s: float = Field(default=1.0, gt=0)
    # HTTP status of a throttle answer (RetCode 140): 200 like other RetCodes, or 429 + Retry-After.
    throttle_http_status: int = Field(default=200)
    credits: int | None = Field(default=None, ge=0)  # per key; None = unlimited
    queue_s: float = Field(default=0.5, ge=0)  # a task is Queuing this long,
    run_s: float = Field(default=1.0, ge=0)  # then Running this long, then Finished or Error
    result_ttl_s: float = Field(default=24 * 3600.0, ge=0)  # result URLs 404 after this
    # Result URLs are built on this base (e.g. http://emulator:8000 in compose); default: the
    # Host the caller used.
    public_url: str | None = None
    # --- fault injection (fractions of POST / calls) ---
    fault_error_5xx: Rate = 0.0  # answer HTTP 503, RetCode 503
    fault_drop: Rate = 0.0  # close the connection without an answer, before processing
    fault_drop_after: Rate = 0.0  # process the call (a submit is paid), then drop the answer
    fault_throttle: Rate = 0.0  # answer RetCode 140 whatever the rate
    fault_slow_rate: Rate = 0.0  # answer only after fault_slow_s (the call itself is processed)
    fault_slow_s: float = Field(default=0.0, ge=0)
    fault_task_error: Rate = 0.0  # accepted tasks that end in Error
    fault_result_5xx: Rate = 0.0  # result downloads answered HTTP 503
    # every result download waits this long before its answer (a distant, slow CDN)
    fault_result_slow_s: float = Field(default=0.0, ge=0)
    # process the call (a submit is paid), then answer fault_status_after_code with a gateway's
    # plain-text body instead of the API's answer (a proxy that lost the upstream's answer)
    fault_status_after: Rate = 0.0
    fault_status_after_code: int = 502
    fault_bad_detail: Rate = 0.0  # accepted tasks whose ListTasksDetails entry is unreadable
    seed: int | None = None  # for the fault dice, to reproduce a run
    # --- resources ---
    max_body_bytes: int = Field(default=64 * 1024 * 1024, gt=0)  # larger bodies: HTTP 413
    max_stored_bytes: int = Field(default=2 * 1024**3, gt=0)  # images + results kept in memory
    max_calls_logged: int = Field(default=200_000, gt=0)  # /_admin/calls keeps the newest
    render_threads: int = Field(default=2, ge=1)
    # "plain": results are the input with an opaque alpha, no matting (benchmarks of the
    # pipeline itself, where matting would take most of a small machine's CPU)
    render: Literal["matting", "plain"] = "matting"
    # A U2Net-family ONNX model; when the file exists the neural engine segments instead of
    # GrabCut (docs/matting.md).
    model_path: Path | None = None
    log_level: str = "warning"

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        # CUTOUT_EMULATOR_<NAME>_FILE for every variable: the key pairs from a secret file.
        return (init_settings, env_settings, dotenv_settings, FileSettingsSource(settings_cls),
                file_secret_settings)

    @field_validator("keys", mode="before")
    @classmethod
    def _split_commas(cls, value: Any) -> Any:
        if isinstance(value, str):
            return tuple(item.strip() for item in value.split(",") if item.strip())
        return value

    @field_validator("keys")
    @classmethod
    def _pairs_well_formed(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        parse_key_pairs(value)
        return value

    @field_validator("throttle_http_status")
    @classmethod
    def _throttle_status(cls, value: int) -> int:
        if value not in (200, 429):
            raise ValueError("must be 200 or 429")
        return value

    @field_validator("fault_status_after_code")
    @classmethod
    def _gateway_status(cls, value: int) -> int:
        if value not in GATEWAY_STATUSES:
            raise ValueError(f"must be one of {sorted(GATEWAY_STATUSES)}")
        return value

    def key_pairs(self) -> dict[str, str]:
        """PublicKey -> PrivateKey."""
        return parse_key_pairs(self.keys)


def parse_key_pairs(pairs: tuple[str, ...] | list[str]) -> dict[str, str]:
    """`PUBLIC:PRIVATE` strings as a mapping; the message never shows a PrivateKey."""
    result: dict[str, str] = {}
    for pair in pairs:
        public, sep, private = pair.partition(":")
        if not sep:  # then the whole string, a PrivateKey perhaps, is in `public`: not shown
            raise ValueError("a key must be PUBLIC:PRIVATE (one has no ':')")
        if not public or not private:
            raise ValueError(f"a key must be PUBLIC:PRIVATE (got one for {public or '?'!r})")
        result[public] = private
    return result
