"""`<PREFIX><NAME>_FILE`: any setting read from a file, as Docker and Kubernetes mount secrets.

`CUTOUT_REDIS_PASSWORD_FILE=/run/secrets/redis_password` gives `redis_password` the file's text
(surrounding whitespace stripped), so a secret never has to be a value in the environment.
The variable itself, when set, wins over its file. A setting that has a `_file` setting of its
own (`CUTOUT_PRIVATE_KEY_FILE`) keeps it.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any
from urllib.parse import quote

from pydantic.fields import FieldInfo
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource

__all__ = ["FileSettingsSource", "SecretFileError", "url_with_password"]

FILE_SUFFIX = "_FILE"


class SecretFileError(ValueError):
    """A `*_FILE` variable names a file that cannot be read; the message names the variable and
    the path, never the file's content."""


class FileSettingsSource(PydanticBaseSettingsSource):
    """Values of the fields whose `<env_prefix><FIELD>_FILE` variable is set."""

    def get_field_value(self, field: FieldInfo, field_name: str) -> tuple[Any, str, bool]:
        # Unused: __call__ reads every field at once.
        return None, field_name, False

    def __call__(self) -> dict[str, Any]:
        wanted = self._variables(self.settings_cls)
        values: dict[str, Any] = {}
        for variable, path in os.environ.items():
            field = wanted.get(variable.upper())
            if field is not None:
                values[field] = _read(variable, path)
        return values

    def _variables(self, settings_cls: type[BaseSettings]) -> dict[str, str]:
        prefix = str(self.config.get("env_prefix", "")).upper()
        fields = settings_cls.model_fields
        return {f"{prefix}{name.upper()}{FILE_SUFFIX}": name for name in fields
                if f"{name}_file" not in fields}


def _read(variable: str, path: str) -> str:
    try:
        return Path(path).read_text(encoding="utf-8").strip()
    except (OSError, UnicodeDecodeError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) else "not UTF-8 text"
        raise SecretFileError(f"{variable}: cannot read {path}: {reason}") from None


def url_with_password(url: str, password: str) -> str:
    """`url` with `password` (percent-encoded) in it, unless it already carries one."""
    scheme, sep, rest = url.partition("://")
    if not sep:
        return url
    authority, slash, path = rest.partition("/")
    userinfo, at, hostport = authority.rpartition("@")
    if not hostport or (at and ":" in userinfo):
        return url  # no host (a socket path), or a password written in the URL: left as is
    return f"{scheme}://{userinfo}:{quote(password, safe='')}@{hostport}{slash}{path}"
