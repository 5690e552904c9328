"""schemathesis against `cutout serve`'s own OpenAPI document: generated requests, valid and
not, to every operation of the running service; no answer may be a server error, and every
answer must match what the document says (status codes, content types, bodies, headers).

The document is loaded when the module is collected, from the app the service runs
(schemathesis' lazy fixture loader does not work with pytest 9); the first test checks that
the running service serves that very document."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import schemathesis
from hypothesis import HealthCheck, settings
from schemathesis.checks import positive_data_acceptance

from config import Settings
from producers.serve.app import create_app
from tests.support.redis_server import RedisServer
from tests.support.serve_process import ServeProcess
from tests.support.workers import settings_env, write_pngs

TOKEN = "schema-token"


@pytest.fixture(scope="module")
def service(redis_server: RedisServer, tmp_path_factory: pytest.TempPathFactory
            ) -> Iterator[ServeProcess]:
    root = tmp_path_factory.mktemp("schema")
    write_pngs(root / "in", 2, prefix="img")
    redis_server.client().flushall()
    env = settings_env({"redis_url": redis_server.url, "files_root": str(root / "in"),
                        "output_dir": str(root / "out"), "serve_tokens": TOKEN})
    with ServeProcess(env, token=TOKEN) as running:
        yield running


DOCUMENT = create_app(Settings(_env_file=None), [TOKEN]).openapi()  # type: ignore[call-arg]
schema = schemathesis.openapi.from_dict(DOCUMENT)


def test_the_service_serves_the_document_under_test(service: ServeProcess) -> None:
    document = service.get("/openapi.json").json()
    assert document == DOCUMENT
    assert set(document["paths"]) == {"/v1/jobs", "/v1/jobs/{job_id}", "/v1/batches/{name}",
                                      "/healthz", "/metrics"}
    assert "HTTPBearer" in document["components"]["securitySchemes"]


@schema.parametrize()
@settings(max_examples=40, deadline=None, suppress_health_check=list(HealthCheck))
def test_no_generated_request_gets_a_server_error(case: schemathesis.Case,
                                                  service: ServeProcess) -> None:
    # positive_data_acceptance is left out: a schema-valid reference to a file that does not
    # exist is rightly refused (422), which that check counts as a failure.
    case.call_and_validate(base_url=service.base_url,
                           headers={"Authorization": f"Bearer {TOKEN}"},
                           excluded_checks=[positive_data_acceptance])

