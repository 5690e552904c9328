"""The API client when the API fails: the right retryable error, downloads, secrets kept."""

from __future__ import annotations

import base64
import email.utils
import logging
import re
import socketserver
import threading
import time
from typing import TYPE_CHECKING

import pytest
from pydantic import SecretStr

from config.settings import Settings
from picpik.client import PicpikClient
from picpik.errors import (
    ApiTimeout,
    InvalidInput,
    RejectedKey,
    RejectedParameters,
    RetryableError,
    Throttled,
    Unavailable,
)
from picpik.models import RemoveBackgroundOptions
from picpik.translate import parse_retry_after
from tests.support.api_client import UUID, calls_made, client_for, free_port, png, wait_until_done

if TYPE_CHECKING:
    from tests.support.emulator_server import EmulatorProcess


# --- transient failures: the right retryable error, and whether the API may have acted ---


def test_going_over_the_rate_limit_is_throttled(emulator: EmulatorProcess) -> None:
    emulator.configure(rate_limit=1 / 60, rate_window_s=60.0)  # one call per minute
    with client_for(emulator) as client:
        client.list_running_tasks()
        with pytest.raises(Throttled) as caught:
            client.list_running_tasks()
    assert caught.value.maybe_accepted is False


def test_a_429_throttle_carries_the_retry_after(emulator: EmulatorProcess) -> None:
    emulator.configure(rate_limit=1 / 60, rate_window_s=60.0, throttle_http_status=429)
    with client_for(emulator) as client:
        client.list_running_tasks()
        with pytest.raises(Throttled) as caught:
            client.list_running_tasks()
    assert caught.value.retry_after_s is not None and caught.value.retry_after_s >= 1


def test_an_injected_throttle_on_a_submit_is_throttled(emulator: EmulatorProcess) -> None:
    emulator.configure(faults={"throttle": 1.0})
    with client_for(emulator) as client, pytest.raises(Throttled) as caught:
        client.remove_background(png(), "image/png", {}, UUID)
    assert caught.value.maybe_accepted is False


def test_a_5xx_answer_is_unavailable_and_not_accepted(emulator: EmulatorProcess) -> None:
    emulator.configure(faults={"error_5xx": 1.0})
    with client_for(emulator) as client, pytest.raises(Unavailable) as caught:
        client.remove_background(png(), "image/png", {}, UUID)
    assert caught.value.maybe_accepted is False


# Which 5xx may follow a call the API took (docs/client.md, "HTTP 5xx"): a gateway's 502 or 504
# (a proxy lost the upstream's answer), or any 5xx that is not the API's own refusal; only a 503
# carrying the API's RetCode says the service turned the call away.
@pytest.mark.parametrize("status", [500, 502, 503, 504])
def test_a_gateway_error_after_the_api_took_the_call_may_have_been_accepted(
        emulator: EmulatorProcess, status: int) -> None:
    emulator.configure(faults={"status_after": 1.0, "status_after_code": status})
    with client_for(emulator) as client, pytest.raises(Unavailable) as caught:
        client.remove_background(png(), "image/png", {}, UUID)
    assert caught.value.maybe_accepted is True
    assert f"HTTP {status}" in caught.value.message
    (call,) = emulator.calls(action="RemoveBackground")
    assert call["outcome"] == "fault_status_after" and call["task_uid"]  # taken, and paid
    assert emulator.key_stats()["credits_spent"] == 1


def test_a_503_with_the_apis_own_retcode_is_a_refusal_surely_not_accepted(
        emulator: EmulatorProcess) -> None:
    emulator.configure(faults={"error_5xx": 1.0})
    with client_for(emulator) as client, pytest.raises(Unavailable) as caught:
        client.remove_background(png(), "image/png", {}, UUID)
    assert caught.value.maybe_accepted is False
    assert "RetCode 503" in caught.value.message
    assert emulator.key_stats()["credits_spent"] == 0


def test_an_answer_slower_than_the_read_timeout_is_a_timeout_that_may_have_been_accepted(
    emulator: EmulatorProcess,
) -> None:
    emulator.configure(faults={"slow_rate": 1.0, "slow_s": 2.0})
    with client_for(emulator, read_timeout_s=0.3) as client, pytest.raises(ApiTimeout) as caught:
        client.remove_background(png(), "image/png", {}, UUID)
    assert caught.value.maybe_accepted is True
    assert calls_made(emulator, "RemoveBackground") == 1


def test_a_dropped_connection_is_retryable_may_have_been_accepted_and_is_not_resent(
    emulator: EmulatorProcess,
) -> None:
    emulator.configure(faults={"drop": 1.0})
    with client_for(emulator) as client, pytest.raises(Unavailable) as caught:
        client.remove_background(png(), "image/png", {}, UUID)
    assert isinstance(caught.value, RetryableError)
    assert caught.value.maybe_accepted is True
    assert calls_made(emulator, "RemoveBackground") == 1  # never resent by the client itself


def test_nobody_listening_is_unavailable_and_surely_not_accepted() -> None:
    settings = Settings(_env_file=None, api_base_url=f"http://127.0.0.1:{free_port()}",
                        public_key="p", private_key=SecretStr("k"), connect_timeout_s=1.0)
    with PicpikClient(settings) as client, pytest.raises(Unavailable) as caught:
        client.remove_background(png(), "image/png", {}, UUID)
    assert caught.value.maybe_accepted is False


@pytest.mark.parametrize("url", ["api.picpik.ai", "ftp://api.picpik.ai"])
def test_an_unusable_api_base_url_is_refused_naming_the_setting(url: str) -> None:
    settings = Settings(_env_file=None, api_base_url=url, public_key="p",
                        private_key=SecretStr("k"))
    with PicpikClient(settings) as client, pytest.raises(InvalidInput) as caught:
        client.list_running_tasks()
    assert caught.value.field == "api_base_url"


# Failures the local API server cannot stage: a tiny raw server answers every request with the
# same bytes, then holds the connection open for a while or cuts it.
_JSON_HEAD = b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n"
SCRIPTS = {
    "stalls mid-answer": (_JSON_HEAD + b'{"RetCode"', 3.0, ApiTimeout),
    "is cut mid-answer": (_JSON_HEAD + b'{"RetCode"', 0.0, Unavailable),
    "answers not JSON": (b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello", 0.0, Unavailable),
    "is a gateway timeout": (b"HTTP/1.1 504 Gateway Timeout\r\nContent-Length: 0\r\n\r\n", 0.0,
                             Unavailable),
    "is a bad gateway": (b"HTTP/1.1 502 Bad Gateway\r\nContent-Length: 0\r\n\r\n", 0.0,
                         Unavailable),
    "is a proxy's bare 503": (b"HTTP/1.1 503 Service Unavailable\r\nContent-Length: 0\r\n\r\n",
                              0.0, Unavailable),
}


def scripted_server(answer: bytes, hold_s: float) -> socketserver.ThreadingTCPServer:
    class Handler(socketserver.StreamRequestHandler):
        def handle(self) -> None:
            length = 0
            while (line := self.rfile.readline()) not in (b"\r\n", b""):
                if line.lower().startswith(b"content-length:"):
                    length = int(line.split(b":")[1])
            self.rfile.read(length)
            self.wfile.write(answer)
            self.wfile.flush()
            time.sleep(hold_s)

    server = socketserver.ThreadingTCPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads, server.block_on_close = True, False
    threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True).start()
    return server


@pytest.mark.parametrize("script", sorted(SCRIPTS))
def test_an_api_that_fails_after_the_request_was_sent_may_have_accepted_it(script: str) -> None:
    answer, hold_s, expected = SCRIPTS[script]
    server = scripted_server(answer, hold_s)
    settings = Settings(_env_file=None, api_base_url=f"http://127.0.0.1:{server.server_address[1]}",
                        public_key="p", private_key=SecretStr("k"), read_timeout_s=0.5)
    try:
        with PicpikClient(settings) as client, pytest.raises(expected) as caught:
            client.list_running_tasks()
    finally:
        server.shutdown()
        server.server_close()
    assert isinstance(caught.value, RetryableError) and caught.value.maybe_accepted is True


def test_a_redirect_is_never_followed_so_a_signed_call_is_not_sent_twice(
        emulator: EmulatorProcess) -> None:
    moved = (f"HTTP/1.1 307 Temporary Redirect\r\nLocation: {emulator.base_url}/\r\n"
             "Content-Length: 0\r\n\r\n").encode()
    server = scripted_server(moved, 0.0)
    settings = Settings(_env_file=None, api_base_url=f"http://127.0.0.1:{server.server_address[1]}",
                        public_key=emulator.public_key,
                        private_key=SecretStr(emulator.private_key))
    try:
        with PicpikClient(settings) as client, pytest.raises(RejectedParameters) as caught:
            client.remove_background(png(), "image/png", RemoveBackgroundOptions(), UUID)
    finally:
        server.shutdown()
        server.server_close()
    assert caught.value.field == "api_base_url" and "307" in caught.value.message
    assert calls_made(emulator) == 0


# --- downloads ---


def test_an_expired_or_unknown_result_is_a_permanent_error(emulator: EmulatorProcess) -> None:
    with client_for(emulator) as client, pytest.raises(RejectedParameters, match="404"):
        client.download(f"{emulator.base_url}/results/nothing-here.png", max_bytes=1 << 20)


def test_a_result_larger_than_the_cap_is_refused(emulator: EmulatorProcess) -> None:
    with client_for(emulator) as client:
        accepted = client.remove_background(png(64, 64), "image/png", {}, UUID)
        detail = wait_until_done(client, accepted.task_uid)
        with pytest.raises(InvalidInput, match="cap"):
            client.download(detail.img_list[0], max_bytes=10)


# --- secrets ---


def test_no_log_line_or_error_holds_the_body_the_signature_or_the_key(
    emulator: EmulatorProcess, caplog: pytest.LogCaptureFixture
) -> None:
    image = png()
    secret = "a-private-key-that-must-not-leak"
    caplog.set_level(logging.DEBUG)
    with client_for(emulator, private_key=SecretStr(secret)) as client, pytest.raises(
        RejectedKey
    ) as caught:
        client.remove_background(image, "image/png", {}, UUID)
    text = caplog.text + str(caught.value) + repr(caught.value)
    assert "RemoveBackground" in caplog.text  # the call was logged, just not its contents
    assert base64.b64encode(image).decode()[:40] not in text
    assert secret not in text
    assert re.search(r"[0-9a-f]{40}", text) is None  # no Signature


@pytest.mark.parametrize(
    ("header", "seconds"),
    [("7", 7.0), ("0.5", 0.5), ("-3", 0.0), ("Wed, 21 Oct 2015 07:28:00 GMT", 0.0),
     ("soon", None), ("inf", None), ("nan", None), (None, None)],
)
def test_retry_after_is_read_as_seconds_or_an_http_date(
    header: str | None, seconds: float | None
) -> None:
    assert parse_retry_after(header) == seconds


def test_retry_after_as_a_future_http_date_counts_down_from_now() -> None:
    future = email.utils.formatdate(time.time() + 120, usegmt=True)
    waited = parse_retry_after(future)
    assert waited is not None and 100 < waited <= 120
