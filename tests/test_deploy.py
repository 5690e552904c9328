"""docker-compose.yml and the Dockerfile, checked without a Docker engine: the compose-spec
schema, hadolint, every command against this project's own entry points, the rules a safe
stack keeps, and Redis and Flower started exactly as the compose file starts them."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import click
import pytest
import yaml
from celery.app.utils import find_app
from celery.bin.base import CLIContext
from celery.bin.celery import celery as celery_cli
from flower.options import options as flower_options

from config import Settings
from emulator.__main__ import parse_args as emulator_args
from producers.cli import cli as cutout_cli
from tests.support.compose import (
    COMPOSE_FILE,
    OVERRIDE_FILE,
    REPO_ROOT,
    load_compose,
    references,
    seconds,
)

BIN = Path(sys.executable).parent
DOCKERFILE = REPO_ROOT / "Dockerfile"
DEPLOY_DOC = REPO_ROOT / "docs" / "deploy.md"
COMPOSE = load_compose()
SERVICES: dict[str, Any] = COMPOSE["services"]
# The services that run this project's image (the others are Redis and RabbitMQ).
OURS = {name: svc for name, svc in SERVICES.items() if "build" in svc}


def published(service: dict[str, Any]) -> list[str]:
    return [str(port) for port in service.get("ports", [])]


# --- the files are what Compose and Docker accept ---


def test_the_compose_files_follow_the_compose_spec() -> None:
    result = subprocess.run(
        [BIN / "check-jsonschema", "--builtin-schema", "vendor.compose-spec",
         COMPOSE_FILE, OVERRIDE_FILE], capture_output=True, text=True, check=False)
    assert result.returncode == 0, result.stdout + result.stderr


def test_hadolint_finds_nothing_in_the_dockerfile() -> None:
    result = subprocess.run([BIN / "hadolint", "--failure-threshold", "info", DOCKERFILE],
                            capture_output=True, text=True, check=False)
    assert result.returncode == 0, result.stdout + result.stderr


def test_hadolint_does_flag_a_faulty_dockerfile(tmp_path: Path) -> None:
    # The check above means something only if the binary really lints.
    faulty = tmp_path / "Dockerfile"
    faulty.write_text("FROM python:latest\nRUN cd /tmp && pip install requests\n")
    result = subprocess.run([BIN / "hadolint", faulty], capture_output=True, text=True,
                            check=False)
    assert result.returncode != 0
    assert "DL3007" in result.stdout  # `latest`


# --- the image ---


def dockerfile_instructions() -> list[tuple[str, str]]:
    joined = re.sub(r"\\\n", " ", DOCKERFILE.read_text())
    lines = [line.strip() for line in joined.splitlines()]
    return [(line.split(None, 1)[0].upper(), line.split(None, 1)[1]) for line in lines
            if line and not line.startswith("#")]


def test_the_image_is_built_in_stages_and_runs_as_a_user_that_is_not_root() -> None:
    steps = dockerfile_instructions()
    froms = [arg for op, arg in steps if op == "FROM"]
    assert len(froms) >= 2 and all(":" in image and "latest" not in image for image in froms)
    users = [arg for op, arg in steps if op == "USER"]
    assert users and users[-1].split(":")[0] not in ("0", "root")
    # Nothing that looks like a secret is baked in.
    for op, arg in steps:
        if op in ("ENV", "ARG"):
            assert not re.search(r"KEY|PASSWORD|TOKEN|SECRET|AUTH", arg.upper()), arg


def test_the_image_copies_every_package_and_the_build_context_holds_each_copy() -> None:
    pyproject = (REPO_ROOT / "pyproject.toml").read_text()
    include = re.search(r"include = \[(.*?)\]", pyproject)
    assert include is not None
    packages = {name.strip(' "*') for name in include.group(1).split(",")}
    sources = {src.rstrip("/") for op, arg in dockerfile_instructions() if op == "COPY"
               and not arg.startswith("--from") for src in arg.split()[:-1]}
    assert packages <= sources
    allowed = {line[1:].rstrip("/") for line in
               (REPO_ROOT / ".dockerignore").read_text().splitlines() if line.startswith("!")}
    for source in sources:
        assert (REPO_ROOT / source).exists(), source
        assert source in allowed, f"{source} is left out of the build context by .dockerignore"


# --- every command is a real entry point of this project ---


def check_celery(args: list[str]) -> None:
    assert args[:3] == ["celery", "-A", "tasks"], args
    app = find_app("tasks")  # imports the package as the container will
    assert app.main == "cutout"
    name, rest = args[3], args[4:]
    command = celery_cli.commands[name]
    if name == "flower":
        for flag in rest:  # Flower hands its flags to tornado's options
            option = flag.removeprefix("--").split("=", 1)[0].replace("-", "_")
            assert option in flower_options._options or option.replace("_", "-") in \
                flower_options._options, f"flower has no option {flag}"
            if option == "conf":  # the file must be in the image
                copies = [arg.split() for op, arg in dockerfile_instructions() if op == "COPY"]
                assert any(dest == flag.split("=", 1)[1] for *_, dest in copies), flag
        return
    parent = click.Context(celery_cli, obj=CLIContext(app=app, no_color=True, workdir=None))
    command.make_context(name, list(rest), parent=parent)  # raises on an unknown flag


def check_cutout(args: list[str]) -> None:
    assert 'cutout = "producers.cli:main"' in (REPO_ROOT / "pyproject.toml").read_text()
    name, rest = args[1], args[2:]
    assert name in cutout_cli.commands, f"`cutout {name}` is not a command of the CLI"
    cutout_cli.commands[name].make_context(name, list(rest), parent=click.Context(cutout_cli))


def check_emulator(args: list[str]) -> None:
    assert args[:3] == ["python", "-m", "emulator"], args
    emulator_args(args[3:])  # exits (argparse) on an unknown flag or a bad value


@pytest.mark.parametrize("name", sorted(OURS))
def test_every_service_runs_an_entry_point_of_this_project(name: str) -> None:
    args = OURS[name]["command"]
    checks = {"celery": check_celery, "cutout": check_cutout, "python": check_emulator}
    assert args[0] in checks, f"{name}: {args[0]} is not one of this project's commands"
    checks[args[0]](args)


def test_each_health_check_asks_the_port_its_service_listens_on() -> None:
    for name, service in OURS.items():
        if name == "worker":
            continue  # no port; nothing waits for a worker to be healthy
        port = re.search(r"--port[= ](\d+)", " ".join(service["command"]))
        assert port is not None, name
        assert f"127.0.0.1:{port.group(1)}/" in " ".join(service["healthcheck"]["test"]), name


# --- the rules of a safe stack ---


def test_no_service_publishes_redis_or_rabbitmq() -> None:
    assert "ports" not in SERVICES["redis"] and "ports" not in SERVICES["rabbitmq"]
    for service in SERVICES.values():
        for port in published(service):
            assert not re.search(r"(^|:)(6379|5672)(/tcp)?$", port), port


def test_flower_is_published_on_127_0_0_1_only_whatever_the_variables() -> None:
    raw = yaml.safe_load(COMPOSE_FILE.read_text())["services"]["flower"]["ports"]
    assert raw and all(str(port).startswith("127.0.0.1:") for port in raw)


def test_the_intake_is_published_on_127_0_0_1_unless_asked_otherwise() -> None:
    assert published(SERVICES["serve"]) == ["127.0.0.1:8080:8080"]
    moved = load_compose(env={"STACK_SERVE_PUBLISH": "0.0.0.0:9000"})
    assert published(moved["services"]["serve"]) == ["0.0.0.0:9000:8080"]


def test_a_stopped_worker_outlives_its_soft_shutdown_and_a_call_in_flight() -> None:
    worker = SERVICES["worker"]
    defaults = {name: field.default for name, field in Settings.model_fields.items()}
    needed = (defaults["soft_shutdown_timeout_s"] + defaults["connect_timeout_s"]
              + defaults["read_timeout_s"])
    assert seconds(worker["stop_grace_period"]) > needed
    assert worker["environment"]["REMAP_SIGTERM"] == "SIGQUIT"


def test_workers_can_be_scaled_and_start_once_redis_answers() -> None:
    worker = SERVICES["worker"]
    assert "container_name" not in worker
    assert any(re.fullmatch(r"--concurrency=\d+", arg) for arg in worker["command"])
    for name in ("worker", "serve", "flower"):
        assert SERVICES[name]["depends_on"]["redis"]["condition"] == "service_healthy", name


def test_every_cutout_service_uses_the_same_redis_and_broker() -> None:
    wiring = [{k: v for k, v in svc["environment"].items()
               if k.startswith(("CUTOUT_REDIS", "CUTOUT_BROKER", "CUTOUT_RESULT"))}
              for name, svc in OURS.items() if name != "emulator"]
    assert wiring[0] and all(each == wiring[0] for each in wiring)
    rabbit = load_compose(env={"STACK_BROKER_URL": "amqp://cutout@rabbitmq:5672/cutout"})
    assert rabbit["services"]["worker"]["environment"]["CUTOUT_BROKER_URL"].startswith("amqp")


def test_every_secret_is_a_file_and_no_value_is_in_the_compose_files() -> None:
    for path in (COMPOSE_FILE, OVERRIDE_FILE):
        text = path.read_text()
        assert not re.search(r"(PASSWORD|PRIVATE_KEY|TOKENS|BASIC_AUTH|KEYS|SECRET):\s*[^/\s$]",
                             text), path
    assert all("file" in secret for secret in COMPOSE["secrets"].values())


def test_the_local_api_server_limits_calls_at_the_rate_the_workers_keep_to() -> None:
    command = SERVICES["emulator"]["command"]
    emulator_rate = float(command[command.index("--rate-limit") + 1])
    worker_rate = SERVICES["worker"]["environment"].get(
        "CUTOUT_RATE_LIMIT", Settings.model_fields["rate_limit"].default)
    assert emulator_rate == float(worker_rate)
    assert command[command.index("--public-url") + 1] == \
        SERVICES["worker"]["environment"]["CUTOUT_API_BASE_URL"]


def test_the_real_api_override_asks_for_the_account_and_leaves_the_local_server_out() -> None:
    with pytest.raises(ValueError, match="PICPIK_PUBLIC_KEY"):
        load_compose(OVERRIDE_FILE)
    override = load_compose(OVERRIDE_FILE, env={"PICPIK_PUBLIC_KEY": "pk",
                                                "PICPIK_RATE_LIMIT": "3"})
    assert override["services"]["emulator"]["profiles"] == ["local-api"]
    assert override["services"]["worker"]["environment"]["CUTOUT_API_BASE_URL"] == \
        Settings.model_fields["api_base_url"].default
    # The local server is left out, so nothing may need it to start.
    assert SERVICES["worker"]["depends_on"]["emulator"]["required"] is False


# --- every variable is documented, with a safe default or a clear error ---


def test_every_variable_of_the_compose_files_has_a_default_or_an_error_and_is_documented(
) -> None:
    page = DEPLOY_DOC.read_text()
    setting_names = {f"CUTOUT_{name.upper()}" for name in Settings.model_fields}
    seen = set()
    for path in (COMPOSE_FILE, OVERRIDE_FILE):
        for ref in references(path):
            seen.add(ref.name)
            assert ref.has_default or (ref.is_required and ref.arg.strip()), ref
            assert f"`{ref.name}`" in page, f"{ref.name} is not in docs/deploy.md"
            # A variable for Compose must not be a setting: the same .env file would change
            # what `make run` and the cutout CLI do on this machine.
            assert ref.name not in setting_names, ref.name
    assert seen  # the files do use variables; each was checked


def test_every_secret_is_made_by_make_secrets_and_listed_in_the_docs(tmp_path: Path) -> None:
    script = REPO_ROOT / "deploy" / "make-secrets.sh"
    subprocess.run(["sh", script], cwd=tmp_path, check=True, capture_output=True)
    page = DEPLOY_DOC.read_text()
    for name, secret in COMPOSE["secrets"].items():
        path = tmp_path / secret["file"]
        assert path.read_text().strip(), f"{path} was not written"
        assert f"`{name}`" in page and f"secrets/{path.name}" in page, name
    assert (tmp_path / "secrets").stat().st_mode & 0o077 == 0
    keys = (tmp_path / "secrets" / "emulator_keys").read_text().strip()
    private = (tmp_path / "secrets" / "local_private_key").read_text().strip()
    assert keys == f"{SERVICES['worker']['environment']['CUTOUT_PUBLIC_KEY']}:{private}"
    before = {p.name: p.read_text() for p in (tmp_path / "secrets").iterdir()}
    subprocess.run(["sh", script], cwd=tmp_path, check=True, capture_output=True)
    assert before == {p.name: p.read_text() for p in (tmp_path / "secrets").iterdir()}
