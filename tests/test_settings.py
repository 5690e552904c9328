"""Settings come from CUTOUT_* variables; the PrivateKey never shows in any rendering."""

from pathlib import Path

import pytest

from config import Settings


def test_private_key_never_prints(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CUTOUT_PRIVATE_KEY", "very-secret-value")
    settings = Settings()
    for rendering in (str(settings), repr(settings), settings.model_dump_json()):
        assert "very-secret-value" not in rendering
    assert settings.private_key_value() == "very-secret-value"


def test_private_key_is_read_from_a_secret_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    secret = tmp_path / "private_key"
    secret.write_text("from-the-file\n")
    monkeypatch.delenv("CUTOUT_PRIVATE_KEY", raising=False)
    monkeypatch.setenv("CUTOUT_PRIVATE_KEY_FILE", str(secret))
    assert Settings().private_key_value() == "from-the-file"


def test_missing_private_key_is_a_clear_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("CUTOUT_PRIVATE_KEY", raising=False)
    monkeypatch.delenv("CUTOUT_PRIVATE_KEY_FILE", raising=False)
    with pytest.raises(ValueError, match="CUTOUT_PRIVATE_KEY"):
        Settings(_env_file=None).private_key_value()


def test_lists_are_comma_separated_in_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CUTOUT_FETCH_ALLOW", "127.0.0.1, 10.0.0.0/8")
    monkeypatch.setenv("CUTOUT_RETCODES_THROTTLE", "140,429")
    monkeypatch.setenv("CUTOUT_IMAGE_FORMATS", "JPEG,PNG")
    settings = Settings()
    assert settings.fetch_allow == ("127.0.0.1", "10.0.0.0/8")
    assert settings.retcodes_throttle == frozenset({140, 429})
    assert settings.image_formats == frozenset({"JPEG", "PNG"})


def test_settings_are_frozen() -> None:
    settings = Settings()
    with pytest.raises(ValueError):
        settings.rate_limit = 99  # type: ignore[misc]


def test_rate_limit_must_be_positive(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CUTOUT_RATE_LIMIT", "0")
    with pytest.raises(ValueError, match="rate_limit"):
        Settings()
