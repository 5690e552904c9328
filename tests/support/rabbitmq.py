"""RabbitMQ as the broker in tests: the machine's RabbitMQ (127.0.0.1:5672, guest/guest), with a
vhost of this test run's own, so nothing is shared with other runs or other users.

Fixtures (reuse them for any test that must hold on both brokers):

- `rabbitmq_vhost` (session): creates the vhost `cutout-test-<random>` with
  `rabbitmqctl add_vhost` and `set_permissions` for guest, yields a `RabbitVhost`, and deletes
  the vhost (queues, messages, bindings) with `rabbitmqctl delete_vhost` at the end of the run.
  Skips (with the reason) when `rabbitmqctl` is not installed.
- `rabbitmq_url` (per test): the vhost's `amqp://` URL, with cutout's queues purged first, so
  that no message of an earlier test reaches this one's workers.
- `broker_url` (per test, parametrised `redis` / `rabbitmq`): the broker URL for a test that
  runs once on each broker; pass it on as the `broker_url` setting (Redis stays the ledger):

      def test_x(broker_url, redis_url, emulator, tmp_path):
          with pipeline_running(redis_url, emulator, tmp_path, broker_url=broker_url) as p:
              ...

A module-scoped pipeline (workers kept across tests) takes `rabbitmq_vhost` and purges once
before starting its workers, never while they run.
"""

from __future__ import annotations

import shutil
import subprocess
import uuid
from collections.abc import Iterator
from dataclasses import dataclass

import pytest
from kombu import Connection

from config.queues import QUEUES

__all__ = ["RabbitVhost", "broker_url", "rabbitmq_url", "rabbitmq_vhost"]

RABBITMQ_HOST = "127.0.0.1:5672"
USER, PASSWORD = "guest", "guest"
RABBITMQCTL_TIMEOUT_S = 60


def rabbitmqctl(*args: str) -> str:
    """Run `rabbitmqctl ARGS` (quiet); its output, or an error with its stderr."""
    done = subprocess.run(["rabbitmqctl", "-q", *args], capture_output=True, text=True,
                          timeout=RABBITMQCTL_TIMEOUT_S, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"rabbitmqctl {' '.join(args)} failed: {done.stderr.strip()}")
    return done.stdout


@dataclass(frozen=True)
class RabbitVhost:
    """One vhost on the machine's RabbitMQ, with guest allowed everything in it."""

    name: str

    @property
    def url(self) -> str:
        return f"amqp://{USER}:{PASSWORD}@{RABBITMQ_HOST}/{self.name}"

    def purge(self) -> None:
        """Empty cutout's queues (those that exist) in this vhost."""
        with Connection(self.url, connect_timeout=10) as conn:
            channel = conn.channel()
            for queue in QUEUES:
                try:
                    channel.queue_purge(queue)
                except Exception:  # not declared yet: nothing to purge; the channel closed
                    channel = conn.channel()

    def queue_lengths(self) -> dict[str, int]:
        """Messages ready in each of cutout's queues (0 for one not declared yet)."""
        out = rabbitmqctl("list_queues", "-p", self.name, "name", "messages_ready")
        lengths = dict.fromkeys(QUEUES, 0)
        for line in out.splitlines():
            parts = line.split()
            if len(parts) == 2 and parts[0] in lengths and parts[1].isdigit():
                lengths[parts[0]] = int(parts[1])
        return lengths


@pytest.fixture(scope="session")
def rabbitmq_vhost() -> Iterator[RabbitVhost]:
    if shutil.which("rabbitmqctl") is None:
        pytest.skip("RabbitMQ is not installed here (no rabbitmqctl)")
    vhost = RabbitVhost(f"cutout-test-{uuid.uuid4().hex[:12]}")
    rabbitmqctl("add_vhost", vhost.name)
    try:
        rabbitmqctl("set_permissions", "-p", vhost.name, USER, ".*", ".*", ".*")
        yield vhost
    finally:
        rabbitmqctl("delete_vhost", vhost.name)


@pytest.fixture
def rabbitmq_url(rabbitmq_vhost: RabbitVhost) -> str:
    """The run's vhost, its cutout queues empty."""
    rabbitmq_vhost.purge()
    return rabbitmq_vhost.url


@pytest.fixture(params=["redis", "rabbitmq"])
def broker_url(request: pytest.FixtureRequest, redis_url: str) -> str:
    """The broker for a test that must hold on both: the suite's Redis, or RabbitMQ."""
    if request.param == "redis":
        return redis_url
    url: str = request.getfixturevalue("rabbitmq_url")
    return url
