"""CUTOUT_<NAME>_FILE gives any setting from a file (Docker and Kubernetes secrets), and the
Redis and broker passwords go into their URLs, so no secret is ever a value in a compose file."""

from __future__ import annotations

import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from kombu import Connection

from config import Settings
from config.secret_files import SecretFileError, url_with_password
from emulator.settings import EmulatorSettings
from tests.support.workers import settings_env

ODD_PASSWORD = "p@ss:w/rd%41#?&="
ENCODED = "p%40ss%3Aw%2Frd%2541%23%3F%26%3D"


@pytest.fixture
def secret(tmp_path: Path) -> Path:
    path = tmp_path / "secret"
    path.write_text(ODD_PASSWORD + "\n")
    return path


def test_any_setting_can_come_from_a_file(tmp_path: Path,
                                          monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "rate").write_text("7.5\n")
    (tmp_path / "allow").write_text("10.0.0.0/8, 127.0.0.1")
    monkeypatch.setenv("CUTOUT_RATE_LIMIT_FILE", str(tmp_path / "rate"))
    monkeypatch.setenv("CUTOUT_FETCH_ALLOW_FILE", str(tmp_path / "allow"))
    settings = Settings(_env_file=None)
    assert settings.rate_limit == 7.5
    assert settings.fetch_allow == ("10.0.0.0/8", "127.0.0.1")


def test_the_variable_wins_over_its_file(secret: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CUTOUT_FLOWER_BASIC_AUTH_FILE", str(secret))
    assert Settings(_env_file=None).flower_basic_auth.get_secret_value() == ODD_PASSWORD
    monkeypatch.setenv("CUTOUT_FLOWER_BASIC_AUTH", "team:from-the-variable")
    assert Settings(_env_file=None).flower_basic_auth.get_secret_value() == \
        "team:from-the-variable"


def test_an_unreadable_file_names_its_variable_and_path(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CUTOUT_REDIS_PASSWORD_FILE", "/nonexistent/redis_password")
    with pytest.raises(SecretFileError, match="CUTOUT_REDIS_PASSWORD_FILE: cannot read "
                                              "/nonexistent/redis_password"):
        Settings(_env_file=None)


def test_the_cli_says_which_secret_file_it_cannot_read(tmp_path: Path) -> None:
    env = settings_env({}) | {"CUTOUT_REDIS_PASSWORD_FILE": str(tmp_path / "missing")}
    cutout = Path(sys.executable).parent / "cutout"
    result = subprocess.run([cutout, "status", "--batch", "b"], env=env, capture_output=True,
                            text=True, check=False, timeout=60)
    assert result.returncode == 2
    assert result.stderr.strip() == (f"cutout: bad setting CUTOUT_REDIS_PASSWORD_FILE: cannot read "
                                     f"{tmp_path / 'missing'}: No such file or directory")


def test_the_redis_password_goes_into_every_redis_url(secret: Path,
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CUTOUT_REDIS_PASSWORD_FILE", str(secret))
    settings = Settings(_env_file=None, redis_url="redis://redis:6379/0",
                        result_backend_url="rediss://other:6380/1")
    assert settings.redis_url == f"redis://:{ENCODED}@redis:6379/0"
    assert settings.broker == settings.redis_url
    assert settings.result_backend == f"rediss://:{ENCODED}@other:6380/1"
    for rendering in (str(settings), repr(settings)):
        assert ODD_PASSWORD not in rendering and ENCODED not in rendering


def test_a_password_written_in_a_url_is_kept(secret: Path,
                                             monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CUTOUT_REDIS_PASSWORD_FILE", str(secret))
    settings = Settings(_env_file=None, redis_url="redis://:own@redis:6379/0")
    assert settings.redis_url == "redis://:own@redis:6379/0"


def test_the_broker_password_goes_into_the_broker_url_only(
    secret: Path, monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("CUTOUT_BROKER_PASSWORD_FILE", str(secret))
    monkeypatch.setenv("CUTOUT_REDIS_PASSWORD", "the-redis-one")
    settings = Settings(_env_file=None, redis_url="redis://redis:6379/0",
                        broker_url="amqp://cutout@rabbitmq:5672/cutout")
    assert settings.broker == f"amqp://cutout:{ENCODED}@rabbitmq:5672/cutout"
    assert settings.redis_url == "redis://:the-redis-one@redis:6379/0"


def test_a_url_without_a_host_is_left_as_it_is() -> None:
    assert url_with_password("unix:///run/redis.sock", "pw") == "unix:///run/redis.sock"
    assert url_with_password("redis://user@h:1/0", "a b") == "redis://user:a%20b@h:1/0"


def test_the_local_api_server_reads_its_key_pairs_from_a_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
) -> None:
    keys = tmp_path / "emulator_keys"
    keys.write_text("local-public:from-a-file\n")
    monkeypatch.setenv("CUTOUT_EMULATOR_KEYS_FILE", str(keys))
    assert EmulatorSettings().key_pairs() == {"local-public": "from-a-file"}


def test_the_local_api_server_names_a_key_file_it_cannot_read(tmp_path: Path) -> None:
    env = settings_env({}) | {"CUTOUT_EMULATOR_KEYS_FILE": str(tmp_path / "missing")}
    result = subprocess.run([sys.executable, "-m", "emulator", "--port", "0"], env=env,
                            capture_output=True, text=True, check=False, timeout=60)
    assert result.returncode == 2
    assert f"CUTOUT_EMULATOR_KEYS_FILE: cannot read {tmp_path / 'missing'}" in result.stderr


@pytest.fixture
def rabbitmq_user() -> Iterator[tuple[str, str]]:
    """A vhost and a user whose password has every character a URL would misread."""
    name = f"cutout-deploy-{uuid.uuid4().hex[:8]}"

    def ctl(*args: str) -> None:
        subprocess.run(["rabbitmqctl", "-q", *args], check=True, capture_output=True,
                       timeout=60)

    ctl("add_vhost", name)
    ctl("add_user", name, ODD_PASSWORD)
    try:
        ctl("set_permissions", "-p", name, name, ".*", ".*", ".*")
        yield name, name
    finally:
        ctl("delete_user", name)
        ctl("delete_vhost", name)


def test_the_broker_password_file_opens_rabbitmq(
    rabbitmq_user: tuple[str, str], secret: Path, monkeypatch: pytest.MonkeyPatch,
) -> None:
    user, vhost = rabbitmq_user
    url = f"amqp://{user}@127.0.0.1:5672/{vhost}"
    with Connection(url, connect_timeout=5) as refused, pytest.raises(Exception, match="ACCESS"):
        refused.ensure_connection(max_retries=1)  # without the password: refused
    monkeypatch.setenv("CUTOUT_BROKER_PASSWORD_FILE", str(secret))
    settings = Settings(_env_file=None, broker_url=url)
    with Connection(settings.broker, connect_timeout=5) as connection:
        queue = connection.SimpleQueue("cutout-deploy-check")
        queue.put({"through": "rabbitmq"})
        message = queue.get(timeout=5)
        assert message.payload == {"through": "rabbitmq"}
        message.ack()
        queue.close()
