"""The Celery configuration as the worker loads it: JSON only, nothing lost, events on, every
queue consumed, and the timing relations (visibility timeout above every delay)."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from config import Settings
from config.celery import celery_config
from config.queues import QUEUES, TASK_ROUTES
from config.timing import TimingError, max_countdown_s, timing_problems
from tasks import app
from tasks.stages.backoff import poll_delay, retry_countdown
from tests.support.workers import REPO_ROOT, settings_env

LOADED = """
import json, tasks
c = tasks.app.conf
print(json.dumps({
    "serializer": c.task_serializer, "accept": list(c.accept_content),
    "result_accept": list(c.result_accept_content), "acks_late": c.task_acks_late,
    "reject_lost": c.task_reject_on_worker_lost, "prefetch": c.worker_prefetch_multiplier,
    "events": c.worker_send_task_events, "sent": c.task_send_sent_event,
    "visibility": c.broker_transport_options["visibility_timeout"],
    "restore_every": c.broker_transport_options["unacked_restore_interval"]
                     * c.broker_transport_options.get("unacked_restore_throttle", 10),
    "time_limit": c.task_time_limit, "broker": c.broker_url,
    "queues": sorted(tasks.app.amqp.queues),
    "tasks": sorted(t for t in tasks.app.tasks if t.startswith("cutout.")),
    "backoff_max": max(tasks.app.tasks[t].retry_backoff_max for t in tasks.app.tasks
                       if t.startswith("cutout."))}))
"""


@pytest.fixture(scope="module")
def loaded() -> dict[str, object]:
    """The configuration a worker process builds from its environment."""
    env = settings_env({"redis_url": "redis://127.0.0.1:1/0", "visibility_timeout_s": 60,
                        "task_time_limit_s": 30, "retry_max_delay_s": 10,
                        "poll_max_interval_s": 10, "fetch_timeout_s": 10,
                        "read_timeout_s": 10, "connect_timeout_s": 2})
    out = subprocess.run([sys.executable, "-c", LOADED], env=env, cwd=REPO_ROOT, check=True,
                         capture_output=True, text=True).stdout
    result: dict[str, object] = json.loads(out)
    return result


def test_the_worker_accepts_json_only(loaded: dict[str, object]) -> None:
    assert loaded["serializer"] == "json"
    assert loaded["accept"] == ["json"] and loaded["result_accept"] == ["json"]


def test_messages_are_acked_late_requeued_on_worker_loss_and_prefetched_one_at_a_time(
        loaded: dict[str, object]) -> None:
    assert (loaded["acks_late"], loaded["reject_lost"], loaded["prefetch"]) == (True, True, 1)


def test_events_are_on_for_flower(loaded: dict[str, object]) -> None:
    assert loaded["events"] is True and loaded["sent"] is True


def test_settings_come_from_the_environment(loaded: dict[str, object]) -> None:
    assert loaded["broker"] == "redis://127.0.0.1:1/0"
    assert (loaded["visibility"], loaded["time_limit"]) == (60, 30)


def test_even_celery_s_own_redis_retries_wait_less_than_the_visibility_timeout(
        loaded: dict[str, object]) -> None:
    vt, limit, backoff = loaded["visibility"], loaded["time_limit"], loaded["backoff_max"]
    assert isinstance(vt, int) and isinstance(limit, int) and isinstance(backoff, int)
    assert limit + backoff < vt


def test_a_dead_worker_s_messages_are_looked_for_several_times_per_visibility_timeout(
        loaded: dict[str, object]) -> None:
    vt, every = loaded["visibility"], loaded["restore_every"]
    assert isinstance(vt, int) and isinstance(every, int)
    assert every <= vt / 4  # kombu's default throttle (every 10th tick) would make it 150 s


def test_a_worker_without_q_consumes_every_queue_and_every_task_has_one(
        loaded: dict[str, object]) -> None:
    assert loaded["queues"] == sorted(QUEUES)
    assert loaded["tasks"] == sorted(TASK_ROUTES)
    assert {route["queue"] for route in TASK_ROUTES.values()} == set(QUEUES)


@pytest.mark.parametrize("overrides", [
    {}, {"visibility_timeout_s": 60, "task_time_limit_s": 30, "retry_max_delay_s": 2,
         "poll_max_interval_s": 4, "fetch_timeout_s": 5, "read_timeout_s": 10,
         "connect_timeout_s": 2}])
def test_the_visibility_timeout_exceeds_every_task_time_plus_delay(
        overrides: dict[str, float]) -> None:
    s = Settings(**overrides)  # type: ignore[arg-type]
    conf = celery_config(s)
    vt = conf["broker_transport_options"]["visibility_timeout"]
    limit = conf["task_time_limit"]
    longest_retry = max(retry_countdown(s, n, retry_after_s=10_000) for n in range(40))
    longest_poll = max(poll_delay(n, s.poll_interval_s, s.poll_max_interval_s)
                       for n in range(40))
    assert vt > limit + longest_retry
    assert vt > limit + longest_poll
    assert vt > limit + max_countdown_s(s)
    assert conf["task_soft_time_limit"] < limit
    assert limit > s.fetch_timeout_s + s.connect_timeout_s + s.read_timeout_s
    assert timing_problems(s) == []


def test_settings_that_break_a_timing_rule_are_refused_with_the_reason() -> None:
    s = Settings(visibility_timeout_s=100, task_time_limit_s=90, retry_max_delay_s=60)
    assert any("visibility_timeout_s (100)" in p for p in timing_problems(s))
    with pytest.raises(TimingError, match="retry_max_delay_s"):
        celery_config(s)


def test_a_lease_too_short_to_renew_is_refused() -> None:
    with pytest.raises(TimingError, match="lease_s"):
        celery_config(Settings(lease_s=2))


def test_the_package_app_is_the_one_celery_finds() -> None:
    assert app.main == "cutout" and "cutout.submit" in app.tasks
