"""The API client against the real local API server, over real HTTP on a free port."""

from __future__ import annotations

import base64
import email.utils
import io
import logging
import re
import socket
import socketserver
import threading
import time
from typing import TYPE_CHECKING, Any

import pytest
from PIL import Image
from pydantic import SecretStr

from config.settings import Settings
from picpik.client import PicpikClient
from picpik.errors import (
    ApiTimeout,
    InvalidInput,
    OutOfCredits,
    RejectedKey,
    RejectedParameters,
    RetryableError,
    Throttled,
    Unavailable,
    UnknownRetCode,
)
from picpik.models import RemoveBackgroundOptions, TaskDetail, parse_options
from picpik.translate import parse_retry_after

if TYPE_CHECKING:
    from tests.support.emulator_server import EmulatorProcess


UUID = "0b7d5c1e-6f0a-4c1e-9d3b-2a4f6e8c0d11"


def png(width: int = 24, height: int = 16) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (width, height), (200, 40, 40)).save(buffer, format="PNG")
    return buffer.getvalue()


def client_for(emulator: EmulatorProcess, **overrides: Any) -> PicpikClient:
    values: dict[str, Any] = {
        "api_base_url": emulator.base_url,
        "public_key": emulator.public_key,
        "private_key": SecretStr(emulator.private_key),
        "connect_timeout_s": 2.0,
        "read_timeout_s": 10.0,
        **overrides,
    }
    return PicpikClient(Settings(_env_file=None, **values))


def calls_made(emulator: EmulatorProcess, action: str | None = None) -> int:
    """Every call the server saw (for one Action, if given), whatever its outcome."""
    total = 0
    for key in emulator.stats()["keys"].values():
        for name, outcomes in key["calls"].items():
            if action is None or name == action:
                total += sum(outcomes.values())
    return total


def wait_until_done(client: PicpikClient, task_uid: str) -> TaskDetail:
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        details = client.list_tasks_details([task_uid])
        if details and details[0].state != "pending":
            return details[0]
        time.sleep(0.05)
    raise AssertionError(f"task {task_uid} still pending after 20 s")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


# --- the success path ---


def test_a_submitted_image_finishes_and_its_cutout_downloads_as_a_png(
    emulator: EmulatorProcess,
) -> None:
    with client_for(emulator) as client:
        options = parse_options({"ErodeSize": 3, "Box": [1, 1, 20, 15]})
        accepted = client.remove_background(png(), "image/png", options, UUID)
        detail = wait_until_done(client, accepted.task_uid)
        cutout = client.download(detail.img_list[0], max_bytes=1 << 20)
    assert accepted.task_uid and accepted.request_uuid == UUID
    assert (detail.task_uid, detail.state, detail.status) == (accepted.task_uid, "finished",
                                                              "Finished")
    with Image.open(io.BytesIO(cutout)) as image:
        assert (image.format, image.size, image.mode) == ("PNG", (24, 16), "RGBA")


def test_bare_base64_is_accepted_when_the_data_uri_is_switched_off(
    emulator: EmulatorProcess,
) -> None:
    with client_for(emulator, raw_image_data_uri=False) as client:
        accepted = client.remove_background(png(), "image/png", RemoveBackgroundOptions(), UUID)
    assert accepted.task_uid


def test_a_task_in_flight_is_listed_as_running(emulator: EmulatorProcess) -> None:
    emulator.configure(queue_s=30.0)
    with client_for(emulator) as client:
        accepted = client.remove_background(png(), "image/png", {}, UUID)
        assert accepted.task_uid in client.list_running_tasks()


def test_one_call_reports_on_a_hundred_tasks(emulator: EmulatorProcess) -> None:
    image = png(8, 8)
    with client_for(emulator) as client:
        uids = [client.remove_background(image, "image/png", {}, f"job-{n}").task_uid
                for n in range(100)]
        details = client.list_tasks_details(uids)
    assert sorted(detail.task_uid for detail in details) == sorted(uids)
    assert calls_made(emulator, "ListTasksDetails") == 1


# --- every rule is checked before any call ---

BAD_SUBMISSIONS: list[tuple[dict[str, Any], str]] = [
    ({"options": {"ErodeSize": 41}}, "ErodeSize"),
    ({"options": {"ErodeSize": -1}}, "ErodeSize"),
    ({"options": {"ForegroundThreshold": 256}}, "ForegroundThreshold"),
    ({"options": {"BackgroundThreshold": 256}}, "BackgroundThreshold"),
    ({"options": {"RemoveType": "Photo"}}, "RemoveType"),
    ({"options": {"HairOptimization": "maybe"}}, "HairOptimization"),
    ({"options": {"OnlyMask": "false"}}, "OnlyMask"),
    ({"options": {"Box": [20, 1, 10, 15]}}, "Box"),
    ({"options": {"Box": [1, 1, 10]}}, "Box"),
    ({"options": {"Box": [-1, 1, 10, 15]}}, "Box"),
    ({"options": {"Colour": "red"}}, "Colour"),
    ({"options": {"Box": [0, 0, 25, 16]}}, "Box"),  # one pixel wider than the 24x16 image
    ({"image": b""}, "RawImage"),
    ({"image": b"not an image"}, "RawImage"),
    ({"image": png()[:30]}, "RawImage"),  # a truncated header
    ({"mime": "image/jpeg"}, "RawImage"),  # a PNG labelled as JPEG
    ({"mime": "image/gif"}, "mime"),
    ({"mime": "text/html"}, "mime"),
    ({"request_uuid": ""}, "request_uuid"),
    ({"request_uuid": "  "}, "request_uuid"),
]


@pytest.mark.parametrize(("change", "field"), BAD_SUBMISSIONS, ids=lambda v: str(v))
def test_each_bad_submission_is_refused_naming_the_field_before_any_call(
    emulator: EmulatorProcess, change: dict[str, Any], field: str
) -> None:
    submission: dict[str, Any] = {"image": png(), "mime": "image/png", "options": {},
                                  "request_uuid": UUID, **change}
    with client_for(emulator) as client, pytest.raises(InvalidInput) as caught:
        client.remove_background(**submission)
    assert caught.value.field == field
    assert calls_made(emulator) == 0


def test_an_image_over_the_byte_cap_is_refused_before_any_call(
    emulator: EmulatorProcess,
) -> None:
    with client_for(emulator, max_image_bytes=10) as client, pytest.raises(InvalidInput) as caught:
        client.remove_background(png(), "image/png", {}, UUID)
    assert caught.value.field == "RawImage"
    assert calls_made(emulator) == 0


def test_a_format_the_settings_do_not_allow_is_refused_before_any_call(
    emulator: EmulatorProcess,
) -> None:
    with client_for(emulator, image_formats="JPEG") as client, pytest.raises(
        InvalidInput, match="image/jpeg"
    ) as caught:
        client.remove_background(png(), "image/png", {}, UUID)
    assert caught.value.field == "mime"
    assert calls_made(emulator) == 0


def test_an_image_over_the_pixel_cap_is_refused_before_any_call(
    emulator: EmulatorProcess,
) -> None:
    with client_for(emulator, max_image_pixels=100) as client, pytest.raises(
        InvalidInput, match="24x16"
    ):
        client.remove_background(png(), "image/png", {}, UUID)
    assert calls_made(emulator) == 0


@pytest.mark.parametrize("uids", [[], "ckti5nf2h4keq8mr9n00", [""], ["a"] * 1001], ids=str)
def test_a_bad_task_uid_list_is_refused_before_any_call(
    emulator: EmulatorProcess, uids: Any
) -> None:
    with client_for(emulator) as client, pytest.raises(InvalidInput) as caught:
        client.list_tasks_details(uids)
    assert caught.value.field is not None and caught.value.field.startswith("TaskUIDList")
    assert calls_made(emulator) == 0


# --- refusals by the API ---


def test_a_wrong_private_key_is_a_rejected_key(emulator: EmulatorProcess) -> None:
    with client_for(emulator, private_key=SecretStr("not-the-key")) as client, pytest.raises(
        RejectedKey
    ) as caught:
        client.remove_background(png(), "image/png", {}, UUID)
    assert "RetCode 120" in str(caught.value)
    assert caught.value.job_id == UUID


def test_an_unknown_public_key_is_a_rejected_key(emulator: EmulatorProcess) -> None:
    with client_for(emulator, public_key="nobody") as client, pytest.raises(RejectedKey):
        client.list_running_tasks()


def test_a_missing_private_key_is_refused_before_any_call(emulator: EmulatorProcess) -> None:
    with client_for(emulator, private_key=None) as client, pytest.raises(RejectedKey) as caught:
        client.list_running_tasks()
    assert caught.value.field == "PrivateKey"
    assert calls_made(emulator) == 0


def test_an_account_out_of_credits_gets_a_permanent_error(emulator: EmulatorProcess) -> None:
    emulator.configure(credits={emulator.public_key: 1})
    with client_for(emulator) as client:
        client.remove_background(png(), "image/png", {}, "job-paid")
        with pytest.raises(OutOfCredits):
            client.remove_background(png(), "image/png", {}, "job-unpaid")


def test_a_parameter_the_api_refuses_is_rejected_parameters_naming_it(
    emulator: EmulatorProcess,
) -> None:
    # Sent around the client's own checks, as another client might: the API's answer is mapped.
    with client_for(emulator) as client, pytest.raises(RejectedParameters) as caught:
        client._call_small("ListTasksDetails", {"TaskUIDList": []}, None)
    assert "RetCode 100" in str(caught.value) and "TaskUIDList" in str(caught.value)


def test_a_retcode_the_settings_do_not_classify_is_unknown_and_keeps_the_message(
    emulator: EmulatorProcess,
) -> None:
    # With 120 taken out of the table, a signature mismatch is a code the client does not know.
    wrong_key = {"private_key": SecretStr("not-the-key"), "retcodes_rejected_key": "110"}
    with client_for(emulator, **wrong_key) as client, pytest.raises(UnknownRetCode) as caught:
        client.list_running_tasks()
    assert caught.value.retcode == 120
    assert "Signature" in str(caught.value)  # the API's own Message


def test_the_retcode_table_comes_from_the_settings(emulator: EmulatorProcess) -> None:
    emulator.configure(faults={"throttle": 1.0})
    with client_for(emulator, retcodes_throttle="", retcodes_transient="140") as client, (
        pytest.raises(Unavailable)
    ):
        client.list_running_tasks()


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
     ("soon", None), (None, None)],
)
def test_retry_after_is_read_as_seconds_or_an_http_date(
    header: str | None, seconds: float | None
) -> None:
    assert parse_retry_after(header) == seconds


def test_retry_after_as_a_future_http_date_counts_down_from_now() -> None:
    future = email.utils.formatdate(time.time() + 120, usegmt=True)
    waited = parse_retry_after(future)
    assert waited is not None and 100 < waited <= 120
