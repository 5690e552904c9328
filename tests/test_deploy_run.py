"""Parts of docker-compose.yml run here as they would in their containers: the redis service's
command and health check against this machine's redis-server, the workers' settings against
that Redis, Flower with the image's flowerconfig.py. Paths under /run/secrets become a
temporary folder; nothing else in the commands changes."""

from __future__ import annotations

import base64
import os
import shutil
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import redis
from kombu import Connection

from config import Settings
from producers.processes import free_port
from tasks.celery_app import create_app
from tasks.store.ledger import Ledger
from tests.support.compose import REPO_ROOT, load_compose
from tests.support.workers import settings_env

COMPOSE = load_compose()
SERVICES = COMPOSE["services"]
# Characters a URL would otherwise misread: the password must reach Redis as it is.
PASSWORD = "p@ss:w/rd%41#?&="
READY_S = 15.0


@dataclass
class ComposeRedis:
    port: int
    secrets: Path
    process: subprocess.Popen[bytes]

    def script(self, text: str) -> str:
        """A command of the compose file with this machine's paths and port."""
        return (text.replace("/run/secrets/", f"{self.secrets}/")
                .replace("redis-cli", f"redis-cli -p {self.port}"))


def redis_command(port: int, data: Path) -> list[str]:
    sh, flag, script = SERVICES["redis"]["command"]
    script = (script.replace("--port 6379", f"--port {port} --bind 127.0.0.1")
              .replace("--dir /data", f"--dir {data}"))
    return [sh, flag, script]


def mount_secrets(tmp_path: Path) -> Path:
    """Every secret of the compose file, made by deploy/make-secrets.sh, under the name it is
    mounted with (/run/secrets/NAME)."""
    subprocess.run(["sh", REPO_ROOT / "deploy" / "make-secrets.sh", tmp_path / "made"],
                   check=True, capture_output=True)
    mounted = tmp_path / "secrets"
    mounted.mkdir()
    for name, secret in COMPOSE["secrets"].items():
        made = tmp_path / "made" / Path(secret["file"]).name
        shutil.copy(made, mounted / name)
    return mounted


def start_redis(tmp_path: Path, password: str) -> tuple[subprocess.Popen[bytes], Path, int]:
    secrets, data, shims = mount_secrets(tmp_path), tmp_path / "data", tmp_path / "bin"
    for folder in (data, shims):
        folder.mkdir()
    (secrets / "redis_password").write_text(password + "\n")
    # The image's docker-entrypoint.sh drops to the redis user, then runs its arguments.
    entrypoint = shims / "docker-entrypoint.sh"
    entrypoint.write_text('#!/bin/sh\nexec "$@"\n')
    entrypoint.chmod(0o755)
    port = free_port()
    command = redis_command(port, data)
    command[2] = command[2].replace("/run/secrets/", f"{secrets}/")
    env = {**os.environ, "PATH": f"{shims}:{os.environ['PATH']}"}
    process = subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL,
                               stderr=subprocess.PIPE)
    return process, secrets, port


@pytest.fixture
def compose_redis(tmp_path: Path) -> Iterator[ComposeRedis]:
    if shutil.which("redis-server") is None:
        raise RuntimeError("redis-server is not installed (apt-get install redis-server)")
    process, secrets, port = start_redis(tmp_path, PASSWORD)
    client = redis.Redis(port=port, password=PASSWORD)
    deadline = time.monotonic() + READY_S
    while True:
        try:
            client.ping()
            break
        except redis.ConnectionError:
            assert process.poll() is None, process.stderr.read() if process.stderr else ""
            assert time.monotonic() < deadline, "the compose redis command did not start"
            time.sleep(0.05)
    yield ComposeRedis(port, secrets, process)
    process.kill()
    process.wait()


def test_redis_as_composed_keeps_every_write_never_evicts_and_wants_its_password(
    compose_redis: ComposeRedis,
) -> None:
    client = redis.Redis(port=compose_redis.port, password=PASSWORD, decode_responses=True)
    config = client.config_get("*")
    assert config["appendonly"] == "yes"
    assert config["appendfsync"] == "always"
    assert config["maxmemory-policy"] == "noeviction"
    with pytest.raises(redis.AuthenticationError):
        redis.Redis(port=compose_redis.port).ping()


def test_redis_health_check_passes_only_on_pong(compose_redis: ComposeRedis) -> None:
    kind, script = SERVICES["redis"]["healthcheck"]["test"]
    assert kind == "CMD-SHELL"
    check = ["sh", "-c", compose_redis.script(script)]
    assert subprocess.run(check, capture_output=True, check=False).returncode == 0
    (compose_redis.secrets / "redis_password").write_text("a-wrong-password\n")
    # redis-cli itself exits 0 here (it prints the NOAUTH error): the check must not.
    assert subprocess.run(check, capture_output=True, check=False).returncode != 0


def test_redis_refuses_to_start_without_a_password(tmp_path: Path) -> None:
    process, _, _ = start_redis(tmp_path, "")
    assert process.wait(timeout=READY_S) != 0


def service_env(name: str, compose_redis: ComposeRedis) -> dict[str, str]:
    """The service's environment from the compose file, pointed at the Redis started here."""
    env = settings_env({})
    for key, value in SERVICES[name]["environment"].items():
        env[key] = (str(value).replace("/run/secrets/", f"{compose_redis.secrets}/")
                    .replace("redis:6379", f"127.0.0.1:{compose_redis.port}"))
    return env


def test_the_workers_settings_reach_that_redis_as_ledger_broker_and_result_backend(
    compose_redis: ComposeRedis, monkeypatch: pytest.MonkeyPatch,
) -> None:
    for key, value in service_env("worker", compose_redis).items():
        monkeypatch.setenv(key, value)
    settings = Settings(_env_file=None)
    assert PASSWORD not in repr(settings)
    assert Ledger.from_url(settings.redis_url).redis.ping()
    with Connection(settings.broker) as connection:
        queue = connection.SimpleQueue("cutout-deploy-check")
        queue.put({"through": "the broker"})
        message = queue.get(timeout=5)
        assert message.payload == {"through": "the broker"}
        message.ack()
        queue.close()
    app = create_app(settings, current=False)
    app.backend.set("cutout-deploy-check", "ok")
    assert app.backend.get("cutout-deploy-check") == b"ok"


def test_flower_as_composed_asks_for_the_password_from_its_secret_file(
    tmp_path: Path, redis_url: str,
) -> None:
    secret = tmp_path / "flower_basic_auth"
    secret.write_text("team:s3cret-from-a-file\n")
    command = SERVICES["flower"]["command"]
    port = free_port()
    args = [arg.replace("/srv/cutout/flowerconfig.py", str(REPO_ROOT / "deploy" /
                                                             "flowerconfig.py"))
            .replace("--address=0.0.0.0", "--address=127.0.0.1")
            .replace("--port=5555", f"--port={port}") for arg in command]
    assert args[0] == "celery"
    env = settings_env({"redis_url": redis_url})
    env["CUTOUT_FLOWER_BASIC_AUTH_FILE"] = str(secret)
    process = subprocess.Popen([sys.executable, "-m", *args], cwd=tmp_path, env=env,
                               stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        base = f"http://127.0.0.1:{port}"
        assert wait_for_status(f"{base}/healthcheck", process) == 200
        assert status(f"{base}/") == 401
        token = base64.b64encode(b"team:s3cret-from-a-file").decode()
        assert status(f"{base}/", {"Authorization": f"Basic {token}"}) == 200
    finally:
        process.terminate()
        process.wait(timeout=10)


def status(url: str, headers: dict[str, str] | None = None) -> int:
    try:
        with urllib.request.urlopen(urllib.request.Request(url, headers=headers or {}),
                                    timeout=5) as answer:
            return int(answer.status)
    except urllib.error.HTTPError as exc:
        return exc.code


def wait_for_status(url: str, process: subprocess.Popen[bytes]) -> int:
    deadline = time.monotonic() + 60
    while True:
        try:
            return status(url)
        except (urllib.error.URLError, ConnectionError):
            if process.poll() is not None:
                raise AssertionError(process.stderr.read().decode() if process.stderr else "") \
                    from None
            assert time.monotonic() < deadline, "flower did not start"
            time.sleep(0.2)
