"""Every CUTOUT_* variable the code reads is documented: the settings in docs/settings.md, the
local API server's in docs/emulator.md, any other name the code spells out somewhere in docs/."""

from __future__ import annotations

import re
from pathlib import Path

from config import Settings
from emulator.settings import EmulatorSettings

REPO_ROOT = Path(__file__).resolve().parents[1]
DOCS = REPO_ROOT / "docs"
PACKAGES = ("config", "picpik", "tasks", "producers", "emulator")


def documented(page: str) -> set[str]:
    return set(re.findall(r"`(CUTOUT_[A-Z0-9_]+)", (DOCS / page).read_text()))


def test_every_setting_is_in_docs_settings() -> None:
    names = {f"CUTOUT_{name.upper()}" for name in Settings.model_fields}
    assert names - documented("settings.md") == set()


def test_every_setting_of_the_local_api_server_is_in_docs_emulator() -> None:
    names = {f"CUTOUT_EMULATOR_{name.upper()}" for name in EmulatorSettings.model_fields}
    assert names - documented("emulator.md") == set()


def test_every_cutout_variable_the_code_names_is_documented() -> None:
    everywhere = set().union(*(documented(page.name) for page in DOCS.glob("*.md")))
    named = set()
    for package in PACKAGES:
        for source in (REPO_ROOT / package).rglob("*.py"):
            named |= set(re.findall(r"CUTOUT_[A-Z0-9_]*[A-Z0-9]", source.read_text()))
    # Prefixes and placeholders (CUTOUT_EMULATOR_, CUTOUT_NAME) are not variables.
    named -= {"CUTOUT_EMULATOR", "CUTOUT_NAME"}
    assert named and named - everywhere == set()
