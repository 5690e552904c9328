"""Settings: every knob of cutout, from `CUTOUT_*` environment variables or a `.env` file.

This is the only module that reads the environment. Units are in the names.
"""

from __future__ import annotations

import base64
import binascii
from functools import lru_cache
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import Field, SecretStr, ValidationInfo, field_validator, model_validator
from pydantic_settings import (
    BaseSettings,
    NoDecode,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
)

from config.secret_files import FileSettingsSource, url_with_password

# Lists in the environment are comma-separated: CUTOUT_FETCH_ALLOW=127.0.0.1,10.0.0.0/8
IntSet = Annotated[frozenset[int], NoDecode]
StrSet = Annotated[frozenset[str], NoDecode]
StrList = Annotated[tuple[str, ...], NoDecode]
SecretList = Annotated[tuple[SecretStr, ...], NoDecode]

# Where CUTOUT_FAILPOINT may stop a worker (tests only; tasks/stages/failpoints.py).
FAILPOINTS = ("after_claim", "after_call_started", "before_task_uid_write",
              "after_task_uid_write", "before_ack")

REDIS_SCHEMES = ("redis", "rediss")

INTERNATIONAL_BASE_URL = "https://api.picpik.ai"
CHINA_BASE_URL = "https://api.picpikai.com"


class Settings(BaseSettings):
    """All of cutout's configuration; frozen once loaded."""

    model_config = SettingsConfigDict(
        env_prefix="CUTOUT_", env_file=".env", extra="ignore", frozen=True
    )

    # --- the remote API ---
    api_base_url: str = INTERNATIONAL_BASE_URL
    public_key: str = ""
    private_key: SecretStr | None = None
    # A file holding the PrivateKey (docker secrets); used when private_key is unset.
    private_key_file: Path | None = None
    # Send RawImage as a data URI with the real MIME type (the docs' example) or as bare base64.
    raw_image_data_uri: bool = True
    connect_timeout_s: float = 5.0
    read_timeout_s: float = 30.0

    # RetCode classification. The real service does not document its codes; these defaults are
    # the local API server's table (docs/emulator.md, "RetCodes"), change them for the real API.
    retcodes_throttle: IntSet = frozenset({140})
    retcodes_transient: IntSet = frozenset({500, 503})
    retcodes_bad_parameters: IntSet = frozenset({100, 150})
    retcodes_rejected_key: IntSet = frozenset({110, 120})
    retcodes_out_of_credits: IntSet = frozenset({130})

    # --- Redis and Celery ---
    # Not in repr: once a password is added below, the URLs carry it.
    redis_url: str = Field(default="redis://127.0.0.1:6379/0", repr=False)
    broker_url: str | None = Field(default=None, repr=False)  # defaults to redis_url
    result_backend_url: str | None = Field(default=None, repr=False)  # defaults to redis_url
    # Put into every redis:// URL above that has none (a secret file: CUTOUT_REDIS_PASSWORD_FILE),
    # so that the password is never part of a URL written in a compose file or a manifest.
    redis_password: SecretStr | None = None
    # Put into broker_url when it has none (RabbitMQ's, or a broker Redis of its own).
    broker_password: SecretStr | None = None
    visibility_timeout_s: int = 3600
    task_time_limit_s: int = 300
    result_expires_s: int = 7 * 24 * 3600
    # On SIGQUIT (or SIGTERM with REMAP_SIGTERM=SIGQUIT, as docker stop sends it), running tasks
    # get this long to finish before the worker stops them and returns their messages. A call
    # in flight finishes anyway (stop signals wait for its answer to be recorded).
    soft_shutdown_timeout_s: float = 10.0
    # A claim's lease: renewed every third of it by the process that holds it, so a dead
    # worker's jobs are free again this soon.
    lease_s: float = 15.0
    # Threads in each worker's main process that download finished results (off the prefork
    # pool, so a slow download never holds a process the rate-limited stages need).
    collect_threads: int = Field(default=4, ge=1, le=64)
    # Test only: "<point>[:<times>]" makes a worker process SIGKILL itself at that point
    # (after_claim, after_call_started, before_task_uid_write, after_task_uid_write,
    # before_ack), the first <times> times (default 1) any process reaches it.
    failpoint: str = ""

    # --- the global rate limiter ---
    rate_limit: float = Field(default=5.0, gt=0)  # API calls per second for the PublicKey
    # Calls that may leave together after a quiet spell; the calls after them are spaced for
    # L - (burst - 1) per second, so no one-second window holds more than L.
    rate_burst: int = Field(default=1, ge=1)
    # The share of the (spaced) limit left unused: a call leaves some milliseconds after its
    # start, more on a loaded machine, and that lateness must not push any window above L.
    # The limiter measures it and keeps the headroom just above its recent p99, within
    # [_MIN, _MAX]; CUTOUT_RATE_HEADROOM is the headroom until enough calls were measured.
    rate_headroom_min: float = Field(default=0.03, gt=0, lt=1)
    rate_headroom_max: float = Field(default=0.3, gt=0, lt=1)
    rate_headroom: float = Field(default=0.07, gt=0, lt=1)
    max_in_flight: int = Field(default=8, ge=1)
    # Each throttle answer multiplies the rate by this factor (for everyone); it then climbs
    # back linearly over this many seconds.
    throttle_backoff_factor: float = Field(default=0.9, gt=0, lt=1)
    throttle_recovery_s: float = Field(default=15.0, gt=0)

    # --- retries ---
    max_retries: int = 8
    retry_base_delay_s: float = 1.0
    retry_max_delay_s: float = 60.0

    # --- polling ---
    poll_batch_size: int = Field(default=100, ge=1, le=1000)
    poll_interval_s: float = 2.0
    poll_max_interval_s: float = 30.0
    poll_deadline_s: float = 6 * 3600.0

    # --- image intake ---
    max_image_bytes: int = 20 * 1024 * 1024
    max_image_pixels: int = 40_000_000
    image_formats: StrSet = frozenset({"JPEG", "PNG", "WEBP", "BMP", "TIFF"})
    fetch_timeout_s: float = 30.0
    files_root: Path = Path(".")
    # Hosts or networks (CIDR) image URLs may reach even though they are not public.
    fetch_allow: StrList = ()

    # --- output ---
    output_dir: Path = Path("cutouts")

    # --- `cutout serve`: the HTTP intake ---
    # Bearer tokens the service accepts (comma-separated); it refuses to start without one
    # unless bound to 127.0.0.1 with --insecure-local.
    serve_tokens: SecretList = ()
    serve_max_body_bytes: int = Field(default=1024 * 1024, ge=1024)
    serve_max_references: int = Field(default=10_000, ge=1)
    # How long an Idempotency-Key is remembered (per token).
    serve_idempotency_ttl_s: int = Field(default=24 * 3600, ge=60)

    # --- webhooks (Standard Webhooks) ---
    # The signing secret, `whsec_` + base64; deliveries need it (none are sent without it).
    webhook_secret: SecretStr | None = None
    webhook_timeout_s: float = Field(default=10.0, gt=0)
    # Retry n (0 first) waits between half and all of base * 2**n, capped at max; the first
    # two retries come within 30 s by default, then they spread out until give_up_after_s.
    webhook_retry_base_s: float = Field(default=10.0, gt=0)
    webhook_retry_max_delay_s: float = Field(default=6 * 3600.0, gt=0)
    webhook_give_up_after_s: float = Field(default=25 * 3600.0, gt=0)
    webhook_concurrency: int = Field(default=4, ge=1, le=64)

    # --- logs ---
    # `text` (Celery's and uvicorn's usual lines) or `json` (one JSON object per line).
    log_format: Literal["text", "json"] = "text"

    # --- Flower ---
    flower_port: int = 5555
    flower_basic_auth: SecretStr = SecretStr("cutout:cutout")

    @field_validator(
        "retcodes_throttle",
        "retcodes_transient",
        "retcodes_bad_parameters",
        "retcodes_rejected_key",
        "retcodes_out_of_credits",
        "image_formats",
        "fetch_allow",
        "serve_tokens",
        mode="before",
    )
    @classmethod
    def _split_commas(cls, value: Any) -> Any:
        if isinstance(value, str):
            return [item.strip() for item in value.split(",") if item.strip()]
        return value

    @field_validator("rate_burst")
    @classmethod
    def _burst_within_limit(cls, value: int, info: ValidationInfo) -> int:
        limit = info.data.get("rate_limit")
        if limit is not None and value > 1 and value > limit / 2:
            raise ValueError(f"a burst of {value} is more than half of CUTOUT_RATE_LIMIT "
                             f"({limit:g}): the calls after it would get less than half the "
                             "rate; use at most half the limit (or 1)")
        return value

    @field_validator("rate_headroom")
    @classmethod
    def _headroom_within_bounds(cls, value: float, info: ValidationInfo) -> float:
        low, high = info.data.get("rate_headroom_min"), info.data.get("rate_headroom_max")
        if low is not None and high is not None and not low <= value <= high:
            raise ValueError(f"must lie between CUTOUT_RATE_HEADROOM_MIN ({low:g}) and "
                             f"CUTOUT_RATE_HEADROOM_MAX ({high:g})")
        return value

    @field_validator("webhook_secret")
    @classmethod
    def _whsec(cls, value: SecretStr | None) -> SecretStr | None:
        if value is not None and not is_whsec(value.get_secret_value()):
            raise ValueError("must be whsec_ followed by the secret in base64")
        return value

    @field_validator("failpoint")
    @classmethod
    def _known_failpoint(cls, value: str) -> str:
        name, _, times = value.partition(":")
        if value and (name not in FAILPOINTS or (times and not times.isdigit())):
            raise ValueError(f"must be one of {', '.join(FAILPOINTS)}, optionally ':TIMES'")
        return value

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        # CUTOUT_<NAME>_FILE for every setting, below the variable itself (config/secret_files.py).
        return (init_settings, env_settings, dotenv_settings, FileSettingsSource(settings_cls),
                file_secret_settings)

    @model_validator(mode="after")
    def _passwords_into_urls(self) -> Settings:
        if self.broker_url and self.broker_password is not None:
            url = url_with_password(self.broker_url, self.broker_password.get_secret_value())
            object.__setattr__(self, "broker_url", url)
        if self.redis_password is not None:
            password = self.redis_password.get_secret_value()
            for name in ("redis_url", "broker_url", "result_backend_url"):
                url = getattr(self, name)
                if url and url.partition("://")[0].lower() in REDIS_SCHEMES:
                    object.__setattr__(self, name, url_with_password(url, password))
        return self

    @model_validator(mode="after")
    def _private_key_from_file(self) -> Settings:
        if self.private_key is None and self.private_key_file is not None:
            secret = SecretStr(self.private_key_file.read_text().strip())
            object.__setattr__(self, "private_key", secret)
        return self

    @property
    def broker(self) -> str:
        return self.broker_url or self.redis_url

    @property
    def result_backend(self) -> str:
        return self.result_backend_url or self.redis_url

    def private_key_value(self) -> str:
        """The PrivateKey in clear, for the signer only; raises if none is configured."""
        if self.private_key is None:
            raise ValueError("no PrivateKey configured: set CUTOUT_PRIVATE_KEY or _FILE")
        return self.private_key.get_secret_value()


def is_whsec(secret: str) -> bool:
    """A Standard Webhooks secret: `whsec_` and non-empty base64 (padding optional)."""
    if not secret.startswith("whsec_"):
        return False
    body = secret.removeprefix("whsec_")
    try:
        return bool(base64.b64decode(body + "=" * (-len(body) % 4), validate=True))
    except binascii.Error:
        return False


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    """The process's settings, read once from the environment."""
    return Settings()
