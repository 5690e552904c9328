"""RabbitMQ as the broker (Redis stays the ledger, the limiter and the result backend): the
pipeline end to end on the machine's RabbitMQ, in a vhost of this run's own, with real workers,
the real local API server and the `cutout` command. Nothing in the stages knows which broker
carries their messages; these tests hold them to that."""

from __future__ import annotations

import json
import subprocess
import sys
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest

from config import Settings
from config.celery import celery_config
from producers import api
from producers.processes import free_port
from tasks.store.ledger import Ledger
from tasks.store.records import JobState
from tests.support.emulator_server import EmulatorProcess, emulator, emulator_process
from tests.support.rabbitmq import RabbitVhost
from tests.support.redis_server import RedisServer
from tests.support.workers import Pipeline, pipeline_running, settings_env, write_pngs

__all__ = ["emulator", "emulator_process"]  # fixtures used here, imported for pytest

CUTOUT = Path(sys.executable).parent / "cutout"


@pytest.fixture(scope="module")
def pipeline(redis_server: RedisServer, emulator_process: EmulatorProcess,
             rabbitmq_vhost: RabbitVhost, tmp_path_factory: pytest.TempPathFactory
             ) -> Iterator[Pipeline]:
    """Two workers (concurrency 2 each) whose broker is RabbitMQ."""
    redis_server.client().flushall()
    rabbitmq_vhost.purge()
    root = tmp_path_factory.mktemp("rabbitmq")
    with pipeline_running(redis_server.url, emulator_process, root, count=2, concurrency=2,
                          broker_url=rabbitmq_vhost.url) as running:
        yield running


def test_thirty_jobs_on_rabbitmq_all_succeed_each_paid_once(
        pipeline: Pipeline, emulator: EmulatorProcess, rabbitmq_vhost: RabbitVhost) -> None:
    # One call in five answered 503 (the API's refusal): retried with a countdown, which on
    # RabbitMQ's classic queues waits in the worker, unacked.
    emulator.configure(faults={"error_5xx": 0.2})
    refs = [str(p) for p in write_pngs(pipeline.inputs / "rmq", 30, prefix="rmq")]
    ids = api.enqueue_many(refs, batch="rmq", settings=pipeline.settings)

    records = api.wait(ids, timeout_s=120, settings=pipeline.settings)

    assert Counter(r.state for r in records.values()) == {JobState.SUCCEEDED: 30}
    paid = Counter(c["request_uuid"] for c in emulator.calls(action="RemoveBackground",
                                                             outcome="ok"))
    assert paid == dict.fromkeys(ids, 1)
    assert emulator.key_stats()["calls"]["RemoveBackground"].get("fault_5xx", 0) > 0
    events = Ledger.from_url(pipeline.settings.redis_url).events(100_000)
    submitted = [e for e in events if e["type"] == "job.submitted" and e["job_id"] in set(ids)]
    assert len(submitted) == 30
    assert all(Path(r.result_paths[0]).is_file() for r in records.values())
    assert rabbitmq_vhost.queue_lengths()["submit"] == 0  # every message taken and acked


def test_the_cutout_command_enqueues_and_follows_a_batch_on_rabbitmq(
        pipeline: Pipeline, emulator: EmulatorProcess, tmp_path: Path) -> None:
    images = write_pngs(pipeline.inputs / "cli", 3, prefix="cli")
    env = settings_env(pipeline.overrides)
    enqueued = subprocess.run(
        [str(CUTOUT), "enqueue", *map(str, images), "--batch", "rmq-cli", "--wait",
         "--idempotency-key", "rmq-cli"], capture_output=True, text=True, env=env, timeout=120,
        check=False)
    status = subprocess.run([str(CUTOUT), "status", "--batch", "rmq-cli", "--json"],
                            capture_output=True, text=True, env=env, timeout=60, check=False)
    assert enqueued.returncode == 0, enqueued.stdout + enqueued.stderr
    assert json.loads(status.stdout)["SUCCEEDED"] == 3
    assert emulator.key_stats()["calls"]["RemoveBackground"] == {"ok": 3}


@pytest.mark.parametrize(("broker", "reason"), [
    ("amqp://guest:guest@127.0.0.1:{port}//", "Connection refused"),
    ("amqp://guest:not-the-password@127.0.0.1:5672//", "ACCESS_REFUSED"),
    ("amqp://guest:guest@127.0.0.1:5672/no-such-vhost", "vhost no-such-vhost not found"),
])
def test_a_rabbitmq_out_of_reach_or_refusing_is_named_with_its_setting(
        redis_url: str, tmp_path: Path, broker: str, reason: str,
        rabbitmq_vhost: RabbitVhost) -> None:
    (image,) = write_pngs(tmp_path, 1)
    env = settings_env({"redis_url": redis_url, "broker_url": broker.format(port=free_port())})
    result = subprocess.run([str(CUTOUT), "enqueue", str(image), "--batch", "no-rabbit"],
                            capture_output=True, text=True, env=env, timeout=120, check=False)
    assert result.returncode == 1, result.stderr
    assert result.stderr.startswith("error: cannot reach the broker (CUTOUT_BROKER_URL")
    assert reason in result.stderr
    assert "not-the-password" not in result.stderr and "Traceback" not in result.stderr


def test_the_rabbitmq_configuration_is_durable_classic_and_confirmed() -> None:
    conf = celery_config(Settings(broker_url="amqp://guest:guest@127.0.0.1:5672/x"))
    assert conf["broker_transport_options"] == {"confirm_publish": True}
    assert all(q.durable and q.queue_arguments == {"x-queue-type": "classic"}
               for q in conf["task_queues"])
    assert conf["task_acks_late"] and conf["task_reject_on_worker_lost"]
    redis_conf = celery_config(Settings(broker_url="redis://127.0.0.1:6379/1"))
    assert "visibility_timeout" in redis_conf["broker_transport_options"]
    assert all(q.queue_arguments is None for q in redis_conf["task_queues"])
