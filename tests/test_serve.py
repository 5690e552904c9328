"""`cutout serve` as users run it: the installed command in a subprocess on a free port, over
real HTTP, on the suite's real Redis (also the broker). No worker runs here: these tests are
about the intake, its refusals, idempotency, reads and start-up rules."""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import redis

from tests.support.redis_server import RedisServer
from tests.support.serve_process import CUTOUT, ServeProcess
from tests.support.workers import settings_env, write_pngs

TOKENS = ("token-a", "token-b")


@pytest.fixture(scope="module")
def root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("serve")
    write_pngs(folder / "in", 5, prefix="img")
    return folder


def serve_env(redis_url: str, root: Path, **more: Any) -> dict[str, str]:
    return settings_env({"redis_url": redis_url, "files_root": str(root / "in"),
                         "output_dir": str(root / "out"), "serve_tokens": ",".join(TOKENS),
                         **more})


@pytest.fixture(scope="module")
def service(redis_server: RedisServer, root: Path) -> Iterator[ServeProcess]:
    redis_server.client().flushall()
    with ServeProcess(serve_env(redis_server.url, root), token=TOKENS[0]) as running:
        yield running


@pytest.fixture
def client(redis_server: RedisServer) -> redis.Redis:
    return redis_server.client()


def post(service: ServeProcess, body: dict[str, Any], **headers: str) -> Any:
    return service.post("/v1/jobs", json=body, headers=headers)


def test_without_a_valid_token_every_endpoint_but_health_and_schema_is_401(
        service: ServeProcess) -> None:
    for token in (None, "not-a-token"):
        headers = {"Authorization": f"Bearer {token}"} if token else {"Authorization": ""}
        for method, path in (("POST", "/v1/jobs"), ("GET", "/v1/jobs/x"),
                             ("GET", "/v1/batches/x"), ("GET", "/metrics")):
            answer = service.session.request(method, service.url(path), headers=headers,
                                             json={"references": ["img0000.png"]}, timeout=10)
            assert answer.status_code == 401, (method, path)
            assert answer.headers["WWW-Authenticate"] == "Bearer"
            assert answer.json()["status"] == 401
    assert service.session.get(service.url("/healthz"), headers={"Authorization": ""}).ok
    assert service.session.get(service.url("/openapi.json"), headers={"Authorization": ""}).ok


def test_every_token_of_the_setting_is_accepted(service: ServeProcess) -> None:
    for token in TOKENS:
        answer = service.get("/v1/batches/none", headers={"Authorization": f"Bearer {token}"})
        assert answer.status_code == 404


def test_queued_jobs_are_answered_202_with_their_ids_and_the_batch_location(
        service: ServeProcess, client: redis.Redis) -> None:
    answer = post(service, {"references": ["img0000.png", "img0001.png"], "batch": "ok",
                            "options": {"erode_size": 5, "OnlyMask": True}})
    assert answer.status_code == 202, answer.text
    assert answer.headers["Location"] == "/v1/batches/ok"
    body = answer.json()
    assert body["batch"] == "ok"
    assert [(j["reference"], j["state"]) for j in body["jobs"]] == [
        ("img0000.png", "ACCEPTED"), ("img0001.png", "ACCEPTED")]
    job = service.get(f"/v1/jobs/{body['jobs'][0]['id']}").json()
    assert job["options"] == {"ErodeSize": 5, "OnlyMask": True} and job["batch"] == "ok"
    assert client.llen("submit") >= 2  # published for the workers


def test_a_bad_option_is_refused_naming_it_and_nothing_is_queued(
        service: ServeProcess) -> None:
    for options, field in (({"ErodeSize": 99}, "ErodeSize"), ({"Colour": "red"}, "Colour"),
                           ({"box": [10, 10, 5, 5]}, "Box")):
        answer = post(service, {"references": ["img0000.png"], "batch": "bad-option",
                                "options": options})
        assert answer.status_code == 422, answer.text
        assert [e["field"] for e in answer.json()["errors"]] == [field]
        assert "nothing was queued" in answer.json()["detail"]
    assert service.get("/v1/batches/bad-option").status_code == 404


def test_each_refused_reference_is_named_and_nothing_is_queued(
        service: ServeProcess, root: Path) -> None:
    outside = write_pngs(root / "elsewhere", 1, prefix="out")[0]
    (root / "in" / "link.png").symlink_to(outside)
    refs = ["img0000.png", "missing.png", "../elsewhere/out0000.png", "link.png",
            str(outside), "http://10.0.0.7/a.png", "ftp://example.com/a.png", " "]
    answer = post(service, {"references": refs, "batch": "bad-refs"})
    assert answer.status_code == 422, answer.text
    errors = answer.json()["errors"]
    assert [e["reference"] for e in errors] == refs[1:]
    assert {e["field"] for e in errors} == {"reference"}
    assert "not a public address" in errors[4]["message"]
    assert service.get("/v1/batches/bad-refs").status_code == 404


def test_a_webhook_url_and_an_output_folder_are_checked_too(service: ServeProcess) -> None:
    for extra, field in (({"webhook_url": "http://10.1.2.3/hook"}, "webhook_url"),
                         ({"webhook_url": "ftp://example.com/"}, "webhook_url"),
                         ({"output_dir": "/etc"}, "output_dir"),
                         ({"output_dir": "a/../../b"}, "output_dir"),
                         ({"batch": "with:colon"}, "batch"),
                         ({"unknown": 1}, "unknown")):
        answer = post(service, {"references": ["img0000.png"], **extra})
        assert answer.status_code == 422, (extra, answer.text)
        assert [e["field"] for e in answer.json()["errors"]] == [field]


def test_an_output_folder_is_placed_below_the_output_dir(
        service: ServeProcess, root: Path) -> None:
    answer = post(service, {"references": ["img0002.png"], "output_dir": "team/shoot"})
    job = service.get(f"/v1/jobs/{answer.json()['jobs'][0]['id']}").json()
    assert job["output_dir"] == str(root / "out" / "team" / "shoot")


def test_force_is_recorded_on_the_jobs_so_they_pay_even_for_a_cutout_made_before(
        service: ServeProcess) -> None:
    forced = post(service, {"references": ["img0003.png"], "force": True}).json()
    plain = post(service, {"references": ["img0003.png"]}).json()
    assert service.get(f"/v1/jobs/{forced['jobs'][0]['id']}").json()["force"] is True
    assert service.get(f"/v1/jobs/{plain['jobs'][0]['id']}").json()["force"] is False
    assert post(service, {"references": ["img0003.png"], "force": "yes"}).status_code == 422


def test_a_retried_post_with_the_same_key_returns_the_same_jobs_and_queues_nothing_new(
        service: ServeProcess, client: redis.Redis) -> None:
    body = {"references": ["img0000.png", "img0001.png", "img0002.png"]}
    first = post(service, body, **{"Idempotency-Key": "order-17"})
    queued = client.llen("submit")
    counts = client.hgetall("cutout:counts")
    again = post(service, body, **{"Idempotency-Key": "order-17"})
    assert first.status_code == again.status_code == 202
    assert again.json() == first.json()  # the same batch (a generated name) and job ids
    assert client.llen("submit") == queued and client.hgetall("cutout:counts") == counts
    other = post(service, {"references": ["img0003.png"]}, **{"Idempotency-Key": "order-17"})
    assert other.status_code == 422
    assert other.json()["errors"][0]["field"] == "Idempotency-Key"
    # Keys are scoped per token: another token's same key is another request.
    theirs = service.session.post(service.url("/v1/jobs"), json=body, timeout=30, headers={
        "Idempotency-Key": "order-17", "Authorization": f"Bearer {TOKENS[1]}"})
    assert theirs.status_code == 202
    assert {j["id"] for j in theirs.json()["jobs"]}.isdisjoint(
        {j["id"] for j in first.json()["jobs"]})


def test_a_batch_reads_back_in_pages_with_its_counts(service: ServeProcess) -> None:
    refs = [f"img000{i}.png" for i in range(5)]
    ids = {j["id"] for j in post(service, {"references": refs, "batch": "pages"}).json()["jobs"]}
    seen: list[str] = []
    offset: int | None = 0
    while offset is not None:
        page = service.get("/v1/batches/pages", params={"offset": offset, "limit": 2}).json()
        assert page["total"] == 5 and page["counts"]["ACCEPTED"] == 5
        assert page["counts"]["SUCCEEDED"] == 0
        seen += [job["job_id"] for job in page["jobs"]]
        offset = page["next_offset"]
    assert sorted(seen) == sorted(ids)


def test_an_unknown_job_is_404(service: ServeProcess) -> None:
    answer = service.get("/v1/jobs/no-such-job")
    assert answer.status_code == 404 and answer.json()["detail"] == "no job no-such-job"


def test_health_says_redis_and_the_broker_answer(service: ServeProcess) -> None:
    assert service.get("/healthz").json() == {"redis": True, "broker": True}


def test_a_body_over_the_cap_is_refused_whether_its_length_is_declared_or_not(
        redis_server: RedisServer, root: Path) -> None:
    env = serve_env(redis_server.url, root, serve_max_body_bytes=2048)
    big = {"references": ["img0000.png"] * 200}
    with ServeProcess(env, token=TOKENS[0]) as small:
        declared = small.post("/v1/jobs", json=big)
        assert declared.status_code == 413, declared.text
        chunks = (part for part in [b'{"references": [', b'"img0000.png",' * 200, b'"x"]}'])
        streamed = small.post("/v1/jobs", data=chunks,
                              headers={"Content-Type": "application/json"})
        assert streamed.status_code == 413, streamed.text
        assert small.post("/v1/jobs", json={"references": ["img0000.png"]}).status_code == 202


def test_too_many_references_are_refused_naming_the_field(
        redis_server: RedisServer, root: Path) -> None:
    env = serve_env(redis_server.url, root, serve_max_references=3)
    with ServeProcess(env, token=TOKENS[0]) as small:
        answer = small.post("/v1/jobs", json={"references": ["img0000.png"] * 4})
        assert answer.status_code == 422
        assert answer.json()["errors"][0]["field"] == "references"


def test_it_refuses_to_start_without_tokens_unless_local_and_insecure(
        redis_server: RedisServer, root: Path) -> None:
    env = {k: v for k, v in serve_env(redis_server.url, root).items()
           if k != "CUTOUT_SERVE_TOKENS"}
    for args in (["--port", "0"], ["--port", "0", "--host", "0.0.0.0", "--insecure-local"]):
        result = subprocess.run([str(CUTOUT), "serve", *args], env=env, capture_output=True,
                                text=True, timeout=60, check=False)
        assert result.returncode == 2, result.stderr
        assert "CUTOUT_SERVE_TOKENS" in result.stderr
    with ServeProcess(env, args=["--insecure-local"]) as local:
        assert local.post("/v1/jobs", json={"references": ["img0001.png"]}).status_code == 202


def test_json_logs_are_one_object_per_line(redis_server: RedisServer, root: Path) -> None:
    import json

    env = serve_env(redis_server.url, root, log_format="json")
    with ServeProcess(env, token=TOKENS[0]) as logged:
        assert logged.get("/v1/jobs/none").status_code == 404
        log_path = logged.log_path
        assert log_path is not None
        logged.stop()  # flushes the last lines
        lines = [line for line in log_path.read_text().splitlines() if line.strip()]
    assert lines
    for line in lines:
        record = json.loads(line)
        assert {"time", "level", "logger", "message"} <= set(record)
