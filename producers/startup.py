"""The CLI's settings, loaded and checked before anything imports `tasks/`.

Importing `tasks/` builds the Celery app from the settings, so a bad `CUTOUT_*` value would
surface there as a traceback. The CLI calls `load_settings()` first instead: a bad value becomes
`BadSettings`, one line naming each variable and the reason, never a secret's value.
"""

from __future__ import annotations

from typing import Any, get_args

from pydantic import SecretStr, ValidationError
from pydantic_core import ErrorDetails

from config import Settings, get_settings
from config.secret_files import SecretFileError
from config.timing import timing_problems
from picpik.errors import CutoutError

__all__ = ["BadSettings", "describe_validation", "load_settings"]

# The longest value quoted back; enough to recognise it, not a wall of text.
MAX_QUOTED = 60


class BadSettings(CutoutError):
    """A `CUTOUT_*` value is unusable; the message names the variable(s) and why."""

    code = "bad_settings"


def _is_secret(annotation: Any) -> bool:
    return annotation is SecretStr or any(_is_secret(arg) for arg in get_args(annotation))


# Fields whose value must never be quoted back (the PrivateKey, Flower's password).
SECRET_FIELDS = frozenset(
    name for name, info in Settings.model_fields.items() if _is_secret(info.annotation)
)


def load_settings() -> Settings:
    """The process's settings, checked like the workers check them; raises BadSettings."""
    try:
        settings = get_settings()
    except ValidationError as exc:
        raise BadSettings(describe_validation(exc)) from None
    except SecretFileError as exc:  # a CUTOUT_<NAME>_FILE that cannot be read
        raise BadSettings(str(exc)) from None
    except OSError as exc:
        # The only file Settings reads itself is the PrivateKey file (the model validator).
        raise BadSettings(
            f"CUTOUT_PRIVATE_KEY_FILE: cannot read {exc.filename}: {exc.strerror}"
        ) from None
    problems = timing_problems(settings)
    if problems:
        # Each problem starts with the name of the field it is about.
        raise BadSettings("; ".join(f"CUTOUT_{p.split(' ', 1)[0].upper()}: {p}" for p in problems))
    return settings


def describe_validation(exc: ValidationError) -> str:
    """Every error as `CUTOUT_NAME: reason (got 'value')`, joined by '; '."""
    return "; ".join(_describe(error) for error in exc.errors())


def _describe(error: ErrorDetails) -> str:
    loc = error["loc"]
    if not loc:
        # A rule across fields: its input is every value, secrets included, so none is quoted.
        return f"CUTOUT_*: {error['msg']}"
    field = str(loc[0])
    reason = error["msg"]
    value = error.get("input")
    if field not in SECRET_FIELDS and isinstance(value, str | int | float):
        quoted = repr(value)
        if len(quoted) > MAX_QUOTED:
            quoted = quoted[: MAX_QUOTED - 3] + "..."
        reason = f"{reason} (got {quoted})"
    return f"CUTOUT_{field.upper()}: {reason}"
