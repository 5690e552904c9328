"""`cutout serve` in front of the real pipeline: the service and two `celery -A tasks worker`
processes on the suite's Redis, the real local API server, and webhook receivers started by
the tests, each checking every signature with its own code. The worker logs are JSON.

The bulk test posts CUTOUT_TEST_SERVE_JOBS references (200 by default, to keep the suite
within its time budget; the issue's 1,000: `CUTOUT_TEST_SERVE_JOBS=1000`, or
`python -m bench serve`)."""

from __future__ import annotations

import json
import os
import subprocess
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.support.emulator_server import EmulatorProcess, emulator, emulator_process
from tests.support.receiver import Receiver
from tests.support.redis_server import RedisServer
from tests.support.serve_process import CUTOUT, ServeProcess
from tests.support.workers import Pipeline, pipeline_running, settings_env, write_pngs

__all__ = ["emulator", "emulator_process"]  # fixtures used here, imported for pytest

SECRET = "whsec_C2FVsBQIhrscChlQIMV+b5sSYspob7oD"
TOKEN = "live-token"
BULK_JOBS = int(os.environ.get("CUTOUT_TEST_SERVE_JOBS", "200"))
TERMINAL = ("SUCCEEDED", "FAILED", "NEEDS_RECONCILIATION")


@dataclass
class Live:
    pipeline: Pipeline
    service: ServeProcess

    def post(self, body: dict[str, Any], **headers: str) -> Any:
        answer = self.service.post("/v1/jobs", json=body, headers=headers)
        assert answer.status_code == 202, answer.text
        return answer.json()

    def wait_batch(self, batch: str, total: int, timeout_s: float) -> dict[str, int]:
        """Counts by state, read over HTTP, once every job of the batch is finished."""
        deadline = time.monotonic() + timeout_s
        while True:
            counts: dict[str, int] = self.service.get(
                f"/v1/batches/{batch}", params={"limit": 1}).json()["counts"]
            if sum(counts[s] for s in TERMINAL) == total:
                return counts
            assert time.monotonic() < deadline, (counts, self.pipeline.logs()[-3000:])
            time.sleep(0.25)

    def metrics(self) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
        answer = self.service.get("/metrics")
        assert answer.status_code == 200
        return {(s.name, tuple(sorted(s.labels.items()))): s.value
                for family in text_string_to_metric_families(answer.text)
                for s in family.samples}


@pytest.fixture(scope="module")
def live(redis_server: RedisServer, emulator_process: EmulatorProcess,
         tmp_path_factory: pytest.TempPathFactory) -> Iterator[Live]:
    redis_server.client().flushall()  # never while workers run: kombu keeps bindings there
    root = tmp_path_factory.mktemp("serve-live")
    # Collects retried for long enough that the metrics test can hold results back.
    with pipeline_running(redis_server.url, emulator_process, root, count=2, concurrency=2,
                          fetch_allow="127.0.0.1", webhook_secret=SECRET, log_format="json",
                          webhook_retry_base_s=0.2, webhook_retry_max_delay_s=1,
                          max_retries=100) as pipeline:
        env = settings_env({**pipeline.overrides, "serve_tokens": TOKEN})
        with ServeProcess(env, token=TOKEN) as service:
            yield Live(pipeline, service)


def paid(emulator: EmulatorProcess) -> Counter[str]:
    return Counter(c["request_uuid"] for c in emulator.calls(action="RemoveBackground",
                                                             outcome="ok"))


def wait_for(check: Any, timeout_s: float, what: str) -> None:
    deadline = time.monotonic() + timeout_s
    while not check():
        assert time.monotonic() < deadline, what
        time.sleep(0.25)


def test_references_posted_over_http_all_succeed_paid_once_each_with_one_signed_delivery(
        live: Live, emulator: EmulatorProcess) -> None:
    files = write_pngs(live.pipeline.inputs / "bulk", BULK_JOBS, prefix="bulk")
    refs = [f"in/bulk/{p.name}" for p in files]
    with Receiver(SECRET) as receiver:
        body = {"references": refs, "batch": "bulk", "webhook_url": receiver.url,
                "options": {"erode_size": 3}}
        accepted = live.post(body, **{"Idempotency-Key": "bulk-1"})
        retried = live.post(body, **{"Idempotency-Key": "bulk-1"})
        ids = [job["id"] for job in accepted["jobs"]]
        assert [job["id"] for job in retried["jobs"]] == ids  # the same jobs, none new
        counts = live.wait_batch("bulk", BULK_JOBS, timeout_s=60 + BULK_JOBS * 0.3)
        assert counts["SUCCEEDED"] == BULK_JOBS, counts
        assert paid(emulator) == dict.fromkeys(ids, 1)  # each paid once, nothing else paid
        wait_for(lambda: len(receiver.accepted()) >= BULK_JOBS, 60, "every delivery")
        time.sleep(1)  # a duplicate would come now
        deliveries = receiver.deliveries
    assert all(d.signed for d in deliveries)
    per_job = Counter(d.event["data"]["job_id"] for d in deliveries if d.status == 200)
    assert per_job == dict.fromkeys(ids, 1)
    assert len({d.webhook_id for d in deliveries}) == BULK_JOBS
    assert {d.event["type"] for d in deliveries} == {"job.succeeded"}
    job = live.service.get(f"/v1/jobs/{ids[0]}").json()
    assert job["state"] == "SUCCEEDED" and job["options"] == {"ErodeSize": 3}
    assert [a["outcome"] for a in job["webhook_attempts"]] == ["delivered"]


def test_a_receiver_answering_503_twice_still_gets_every_event_and_status_shows_why(
        live: Live) -> None:
    files = write_pngs(live.pipeline.inputs / "flaky", 3, prefix="flaky")
    (live.pipeline.inputs / "flaky" / "broken.png").write_text("not an image")
    refs = [f"in/flaky/{p.name}" for p in files] + ["in/flaky/broken.png"]
    with Receiver(SECRET, fail_first=2) as receiver:
        ids = [j["id"] for j in live.post({"references": refs, "batch": "flaky",
                                           "webhook_url": receiver.url})["jobs"]]
        counts = live.wait_batch("flaky", 4, timeout_s=60)
        assert (counts["SUCCEEDED"], counts["FAILED"]) == (3, 1)
        wait_for(lambda: len(receiver.accepted()) == 4, 60, "every event, after two 503s")
    tries = Counter(d.webhook_id for d in receiver.deliveries)
    assert sorted(tries.values()) == [3, 3, 3, 3] and all(d.signed for d in receiver.deliveries)
    events = {d.event["data"]["job_id"]: d.event for d in receiver.accepted()}
    assert events[ids[3]]["type"] == "job.failed"
    assert events[ids[3]]["data"]["error"]["field"] == "reference"
    status = subprocess.run([str(CUTOUT), "status", ids[0]], capture_output=True, text=True,
                            env=live.service.env, timeout=60, check=False)
    lines = [line for line in status.stdout.splitlines() if line.startswith("webhook ")]
    assert len(lines) == 3, status.stdout
    assert "HTTP 503: retrying" in lines[0] and "HTTP 503: retrying" in lines[1]
    assert lines[2].endswith("HTTP 200: delivered")


def test_metrics_scraped_during_a_live_run_move_as_jobs_finish(
        live: Live, emulator: EmulatorProcess) -> None:
    jobs = 12
    files = write_pngs(live.pipeline.inputs / "metrics", jobs, prefix="m")
    before = live.metrics()

    def figure(name: str, m: dict[Any, float], **labels: str) -> float:
        return m.get((name, tuple(sorted(labels.items()))), 0.0) - \
            before.get((name, tuple(sorted(labels.items()))), 0.0)

    # Every result download answers 503 at first: the jobs are paid for and wait SUBMITTED.
    emulator.configure(faults={"result_5xx": 1.0})
    live.post({"references": [f"in/metrics/{p.name}" for p in files], "batch": "metrics"})
    wait_for(lambda: live.metrics()[("cutout_jobs", (("state", "SUBMITTED"),))] == jobs, 60,
             "every job submitted")
    held = live.metrics()
    assert figure("cutout_api_calls_total", held, action="RemoveBackground", outcome="ok") == jobs
    assert figure("cutout_jobs", held, state="SUCCEEDED") == 0
    assert figure("cutout_credits_spent_total", held) == 0
    assert held[("cutout_oldest_open_job_age_seconds", ())] > 0

    emulator.configure(faults={"result_5xx": 0.0})  # the results come through now
    seen: list[dict[Any, float]] = []

    def all_counted() -> bool:
        seen.append(live.metrics())
        m = seen[-1]
        return figure("cutout_jobs", m, state="SUCCEEDED") == jobs and \
            figure("cutout_job_latency_seconds_count", m) == jobs

    wait_for(all_counted, 60, "every job counted")
    done = seen[-1]
    succeeded = [figure("cutout_jobs", m, state="SUCCEEDED") for m in [held, *seen]]
    assert succeeded == sorted(succeeded)  # never backwards
    assert done[("cutout_jobs", (("state", "SUBMITTED"),))] == 0
    assert figure("cutout_jobs_finished_total", done, event="job.succeeded") == jobs
    assert figure("cutout_credits_spent_total", done) > 0
    assert figure("cutout_api_calls_total", done, action="ListTasksDetails", outcome="ok") > 0
    assert figure("cutout_api_calls_total", done, action="RemoveBackground",
                  outcome="ok") == jobs
    assert done[("cutout_results_expiring_within_seconds", ())] == 0
    assert done[("cutout_queue_messages", (("queue", "submit"),))] == 0


def test_worker_logs_are_json_lines_with_the_job_batch_and_stage(live: Live) -> None:
    lines = [line for w in live.pipeline.workers for line in w.log_text().splitlines()
             if line.strip()]
    records = [json.loads(line) for line in lines]  # every line is one JSON object
    about_jobs = [r for r in records if r.get("job_id")]
    assert about_jobs
    assert all(r.get("stage") and r.get("batch") for r in about_jobs
               if r.get("task_name") == "cutout.submit" or r.get("stage") == "webhook")
    batches = {r.get("batch") for r in about_jobs}
    assert {"bulk", "flaky", "metrics"} <= batches
    stages = {r["stage"] for r in about_jobs}
    assert {"submit", "persist", "collect", "webhook"} <= stages
    received = [r for r in records if r["message"].endswith("received")
                and r.get("task_name") == "cutout.submit"]
    assert received and all(r.get("job_id") and r.get("batch") for r in received)
