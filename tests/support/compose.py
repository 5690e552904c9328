"""docker-compose.yml read as Compose reads it, without a Docker engine: YAML (with its anchors
and merge keys), then `${VAR}` interpolation with the file's own defaults."""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

__all__ = ["COMPOSE_FILE", "OVERRIDE_FILE", "REPO_ROOT", "Reference", "interpolate",
           "load_compose", "references", "seconds"]

REPO_ROOT = Path(__file__).resolve().parents[2]
COMPOSE_FILE = REPO_ROOT / "docker-compose.yml"
OVERRIDE_FILE = REPO_ROOT / "docker-compose.picpik.yml"

# Compose's interpolation: $$ is a literal $; ${VAR}, ${VAR:-default}, ${VAR-default},
# ${VAR:?error}, ${VAR?error}, ${VAR:+other}, ${VAR+other}; $VAR.
_TOKEN = re.compile(
    r"\$\$|\$\{(?P<name>[A-Za-z_][A-Za-z0-9_]*)(?:(?P<op>:?[-?+])(?P<arg>[^}]*))?\}"
    r"|\$(?P<bare>[A-Za-z_][A-Za-z0-9_]*)"
)


@dataclass(frozen=True)
class Reference:
    """One `${...}` in a compose file."""

    name: str
    op: str  # "" (none), "-", ":-", "?", ":?", "+", ":+"
    arg: str

    @property
    def has_default(self) -> bool:
        return self.op in ("-", ":-")

    @property
    def is_required(self) -> bool:
        return self.op in ("?", ":?")


def references(path: Path) -> list[Reference]:
    """Every variable the file refers to (comments included: Compose ignores them, so do we)."""
    text = "\n".join(line for line in path.read_text().splitlines()
                     if not line.lstrip().startswith("#"))
    found = []
    for match in _TOKEN.finditer(text):
        if match.group(0) == "$$":
            continue
        name = match.group("name") or match.group("bare")
        found.append(Reference(name, match.group("op") or "", match.group("arg") or ""))
    return found


def interpolate(value: Any, env: Mapping[str, str]) -> Any:
    """`value` with every variable replaced as Compose would, given the environment `env`."""
    if isinstance(value, dict):
        return {key: interpolate(item, env) for key, item in value.items()}
    if isinstance(value, list):
        return [interpolate(item, env) for item in value]
    if isinstance(value, str):
        return _TOKEN.sub(lambda match: _substitute(match, env), value)
    return value


def _substitute(match: re.Match[str], env: Mapping[str, str]) -> str:
    if match.group(0) == "$$":
        return "$"
    name = match.group("name") or match.group("bare")
    op, arg = match.group("op") or "", match.group("arg") or ""
    value = env.get(name)
    unset_or_empty = not value if op.startswith(":") else value is None
    if op.endswith("-"):
        return arg if unset_or_empty else str(value)
    if op.endswith("?"):
        if unset_or_empty:
            raise ValueError(f"{name}: {arg}")
        return str(value)
    if op.endswith("+"):
        return "" if unset_or_empty else arg
    return value or ""


def load_compose(path: Path = COMPOSE_FILE, env: Mapping[str, str] | None = None) -> Any:
    """The file as Compose sees it with this environment (by default: nothing set)."""
    return interpolate(yaml.safe_load(path.read_text()), env or {})


def seconds(duration: str) -> float:
    """A Compose duration ("60s", "1m30s", "1h") in seconds."""
    units = {"h": 3600.0, "m": 60.0, "s": 1.0, "ms": 0.001, "us": 1e-6}
    parts = re.findall(r"(\d+(?:\.\d+)?)(ms|us|h|m|s)", duration)
    if not parts or "".join(n + u for n, u in parts) != duration:
        raise ValueError(f"not a Compose duration: {duration!r}")
    return sum(float(number) * units[unit] for number, unit in parts)
