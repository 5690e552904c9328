"""The API client against the real local API server: success, rules checked first, refusals."""

from __future__ import annotations

import io
from typing import TYPE_CHECKING, Any

import pytest
from PIL import Image
from pydantic import SecretStr

from picpik.errors import (
    InvalidInput,
    OutOfCredits,
    RejectedKey,
    RejectedParameters,
    Unavailable,
    UnknownRetCode,
)
from picpik.models import RemoveBackgroundOptions, parse_options
from tests.support.api_client import UUID, calls_made, client_for, png, wait_until_done

if TYPE_CHECKING:
    from tests.support.emulator_server import EmulatorProcess


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


@pytest.mark.parametrize(("unset", "field"), [({"public_key": ""}, "PublicKey"),
                                              ({"private_key": None}, "PrivateKey")], ids=str)
def test_a_submit_without_a_key_is_refused_naming_the_job_and_the_key(
    emulator: EmulatorProcess, unset: dict[str, Any], field: str
) -> None:
    with client_for(emulator, **unset) as client, pytest.raises(RejectedKey) as caught:
        client.remove_background(png(), "image/png", {}, UUID)
    assert (caught.value.job_id, caught.value.field) == (UUID, field)
    assert f"job {UUID}" in str(caught.value)
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
