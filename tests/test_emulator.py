"""The local API server over real HTTP: signatures, parameter rules, task lifecycle, results.

Requests are signed with `picpik.signing.sign` directly (not with the client), so these tests
pin the server's side of the contract on their own.
"""

from __future__ import annotations

import io
import time
from typing import Any

import pytest
import requests
from PIL import Image

from picpik.signing import sign
from tests.support.emulator_server import EmulatorProcess, image_data_uri, noise_png_uri


def submit(emulator: EmulatorProcess, **options: Any) -> dict[str, Any]:
    params = {"RawImage": image_data_uri(), **options}
    answer: dict[str, Any] = emulator.call("RemoveBackground", params).json()
    return answer


def details(emulator: EmulatorProcess, *uids: str) -> list[dict[str, Any]]:
    answer = emulator.call("ListTasksDetails", {"TaskUIDList": list(uids)}).json()
    assert answer["RetCode"] == 0, answer
    entries: list[dict[str, Any]] = answer["TaskDetailList"]
    return entries


def wait_until_done(emulator: EmulatorProcess, uid: str) -> tuple[list[str], dict[str, Any]]:
    """Poll until the task leaves Queuing/Running; the statuses seen, and the last entry."""
    seen: list[str] = []
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        (entry,) = details(emulator, uid)
        if not seen or seen[-1] != entry["Status"]:
            seen.append(entry["Status"])
        if entry["Status"] in ("Finished", "Error"):
            return seen, entry
        time.sleep(0.02)
    raise AssertionError(f"task {uid} never finished; statuses seen: {seen}")


def test_a_signed_remove_background_is_accepted_and_echoes_request_uuid(
    emulator: EmulatorProcess
) -> None:
    answer = submit(emulator, request_uuid="job-1", Box=[1, 2, 30, 40])
    assert answer["RetCode"] == 0 and answer["Message"] == ""
    assert answer["Action"] == "RemoveBackground" and answer["request_uuid"] == "job-1"
    assert len(answer["TaskUID"]) == 20
    assert emulator.key_stats()["calls"] == {"RemoveBackground": {"ok": 1}}


def test_a_signature_made_with_another_private_key_is_refused_with_120(
    emulator: EmulatorProcess
) -> None:
    answer = emulator.call("ListRunningTasks", private_key="not-the-key").json()
    assert answer["RetCode"] == 120 and answer["Message"].startswith("Signature")
    assert emulator.key_stats()["calls"] == {"ListRunningTasks": {"bad_signature": 1}}


def test_a_call_without_signature_is_refused_with_120(emulator: EmulatorProcess) -> None:
    body = {"Action": "ListRunningTasks", "PublicKey": emulator.public_key}
    answer = requests.post(f"{emulator.base_url}/", json=body, timeout=10).json()
    assert answer["RetCode"] == 120


def test_an_unknown_public_key_is_refused_with_110(emulator: EmulatorProcess) -> None:
    emulator.public_key, real = "stranger", emulator.public_key
    try:
        answer = emulator.call("ListRunningTasks").json()
    finally:
        emulator.public_key = real
    assert answer["RetCode"] == 110 and "PublicKey" in answer["Message"]
    assert emulator.key_stats("stranger")["calls"] == {"ListRunningTasks": {"unknown_key": 1}}


def test_an_unknown_action_is_refused_with_150(emulator: EmulatorProcess) -> None:
    answer = emulator.call("RemoveEverything").json()
    assert answer["RetCode"] == 150 and answer["Message"].startswith("Action")


def test_a_body_that_is_not_json_gets_http_400_and_retcode_100(emulator: EmulatorProcess) -> None:
    response = requests.post(f"{emulator.base_url}/", data=b"{not json", timeout=10)
    assert response.status_code == 400 and response.json()["RetCode"] == 100


BAD_PARAMETERS = [
    ("Box", {"Box": [30, 2, 1, 40]}),  # x1 > x2
    ("Box", {"Box": [1, 40, 30, 2]}),  # y1 > y2
    ("Box", {"Box": [-1, 2, 30, 40]}),
    ("Box", {"Box": [1, 2, 30]}),
    ("Box", {"Box": [1, 2, 65, 40]}),  # outside the 64x48 image
    ("Box", {"Box": [1, 2, 30, 49]}),
    ("RemoveType", {"RemoveType": "Cartoon"}),
    ("ErodeSize", {"ErodeSize": 41}),
    ("ErodeSize", {"ErodeSize": -1}),
    ("ErodeSize", {"ErodeSize": "15"}),
    ("ForegroundThreshold", {"ForegroundThreshold": 256}),
    ("BackgroundThreshold", {"BackgroundThreshold": -1}),
    ("HairOptimization", {"HairOptimization": "sometimes"}),
    ("OnlyMask", {"OnlyMask": "yes"}),
    ("RawImage", {"RawImage": None}),
    ("RawImage", {"RawImage": "data:image/png;base64,@@@not base64@@@"}),
    ("RawImage", {"RawImage": "aGVsbG8gd29ybGQ="}),  # valid base64 of "hello world"
    ("Colour", {"Colour": "red"}),  # not a parameter of RemoveBackground
    ("erode_size", {"erode_size": 3}),  # the model's Python name is not an API name
]


@pytest.mark.parametrize(("field", "bad"), BAD_PARAMETERS)
def test_every_remove_background_rule_is_refused_with_100_naming_the_field(
    emulator: EmulatorProcess, field: str, bad: dict[str, Any]
) -> None:
    answer = submit(emulator, **bad)
    assert answer["RetCode"] == 100, answer
    assert answer["Message"].startswith(f"{field}"), answer["Message"]
    assert emulator.key_stats()["credits_spent"] == 0


@pytest.mark.parametrize(
    ("action", "params", "field"),
    [
        ("ListTasksDetails", {"TaskUIDList": []}, "TaskUIDList"),
        ("ListTasksDetails", {"TaskUIDList": "abc"}, "TaskUIDList"),
        ("ListTasksDetails", {"TaskUIDList": [7]}, "TaskUIDList"),
        ("ListTasksDetails", {"TaskUIDList": ["a"] * 1001}, "TaskUIDList"),
        ("ListTasksDetails", {}, "TaskUIDList"),
        ("ListTasksDetails", {"task_uids": ["a"]}, "task_uids"),
        ("ListRunningTasks", {"Limit": 3}, "Limit"),
        ("ListRunningTasks", {"request_uuid": 42}, "request_uuid"),
    ],
)
def test_every_listing_rule_is_refused_with_100_naming_the_field(
    emulator: EmulatorProcess, action: str, params: dict[str, Any], field: str
) -> None:
    answer = emulator.call(action, params).json()
    assert answer["RetCode"] == 100 and answer["Message"].startswith(field), answer


def test_a_bare_base64_raw_image_is_accepted_like_a_data_uri(emulator: EmulatorProcess) -> None:
    bare = image_data_uri().split(",", 1)[1]
    assert emulator.call("RemoveBackground", {"RawImage": bare}).json()["RetCode"] == 0


def test_a_large_image_is_checked_off_the_event_loop_with_the_same_rules(
    emulator: EmulatorProcess
) -> None:
    raw = noise_png_uri(400)
    uid = submit(emulator, RawImage=raw, Box=[0, 0, 400, 400])["TaskUID"]
    assert submit(emulator, RawImage=raw, Box=[0, 0, 401, 400])["Message"].startswith("Box")
    wrong = emulator.call("RemoveBackground", {"RawImage": raw}, private_key="nope").json()
    assert wrong["RetCode"] == 120
    _, entry = wait_until_done(emulator, uid)
    image = Image.open(io.BytesIO(requests.get(entry["ImgList"][0], timeout=10).content))
    assert (image.mode, image.size) == ("RGBA", (400, 400))


def test_a_signature_in_upper_case_hex_is_refused(emulator: EmulatorProcess) -> None:
    body = {"Action": "ListRunningTasks", "PublicKey": emulator.public_key}
    body["Signature"] = sign(body, emulator.private_key).upper()
    answer = requests.post(f"{emulator.base_url}/", json=body, timeout=10).json()
    assert answer["RetCode"] == 120


def test_a_signature_with_non_ascii_characters_is_refused_with_120_not_an_internal_error(
    emulator: EmulatorProcess
) -> None:
    body = {"Action": "ListRunningTasks", "PublicKey": emulator.public_key, "Signature": "é" * 40}
    response = requests.post(f"{emulator.base_url}/", json=body, timeout=10)
    assert (response.status_code, response.json()["RetCode"]) == (200, 120)


def test_a_task_goes_from_queuing_through_running_to_finished_with_an_rgba_png(
    emulator: EmulatorProcess
) -> None:
    uid = submit(emulator, Box=[4, 4, 40, 40])["TaskUID"]
    seen, entry = wait_until_done(emulator, uid)
    assert seen[-1] == "Finished" and seen == [s for s in ("Queuing", "Running", "Finished")
                                               if s in seen]
    assert entry["ErrorCode"] == 0 and entry["ErrorMassage"] == "" and entry["ConsumeApiPoint"] == 1
    response = requests.get(entry["ImgList"][0], timeout=10)
    image = Image.open(io.BytesIO(response.content))
    assert response.headers["content-type"] == "image/png"
    assert (image.format, image.mode, image.size) == ("PNG", "RGBA", (64, 48))


def test_only_mask_returns_a_single_channel_png_of_the_input_size(
    emulator: EmulatorProcess
) -> None:
    uid = submit(emulator, OnlyMask=True, RawImage=image_data_uri(50, 70, "JPEG"))["TaskUID"]
    _, entry = wait_until_done(emulator, uid)
    image = Image.open(io.BytesIO(requests.get(entry["ImgList"][0], timeout=10).content))
    assert (image.mode, image.size) == ("L", (50, 70))


def test_a_task_is_queuing_then_running_while_its_time_is_not_up(emulator: EmulatorProcess) -> None:
    emulator.configure(queue_s=60)
    queued = submit(emulator)["TaskUID"]
    emulator.configure(queue_s=0, run_s=60)
    running = submit(emulator)["TaskUID"]
    statuses = {e["TaskUID"]: e["Status"] for e in details(emulator, queued, running)}
    assert statuses == {queued: "Queuing", running: "Running"}
    assert all(e["ImgList"] == [] for e in details(emulator, queued, running))


def test_list_running_tasks_lists_the_tasks_in_flight_and_not_the_finished_ones(
    emulator: EmulatorProcess
) -> None:
    finished = submit(emulator)["TaskUID"]
    wait_until_done(emulator, finished)
    emulator.configure(queue_s=60)
    pending = {submit(emulator)["TaskUID"] for _ in range(3)}
    answer = emulator.call("ListRunningTasks").json()
    assert answer["RetCode"] == 0 and set(answer["TaskUIDList"]) == pending


def test_a_result_url_answers_404_once_it_has_expired(emulator: EmulatorProcess) -> None:
    uid = submit(emulator)["TaskUID"]
    _, entry = wait_until_done(emulator, uid)
    url = entry["ImgList"][0]
    assert requests.get(url, timeout=10).status_code == 200
    emulator.configure(result_ttl_s=0)
    assert requests.get(url, timeout=10).status_code == 404
    assert emulator.key_stats()["downloads"] == 1
    assert emulator.key_stats()["downloads_refused"] == 1


def test_list_tasks_details_answers_for_100_task_uids_in_one_call(
    emulator: EmulatorProcess
) -> None:
    uids = [submit(emulator)["TaskUID"] for _ in range(100)]
    entries = details(emulator, *uids)
    assert [e["TaskUID"] for e in entries] == uids
    assert {e["Action"] for e in entries} == {"RemoveBackground"}
    assert emulator.key_stats()["calls"]["ListTasksDetails"] == {"ok": 1}


def test_unknown_task_uids_and_other_keys_tasks_are_left_out_of_the_details(
    emulator: EmulatorProcess
) -> None:
    emulator.configure(keys={"other-public": "other-private"})
    mine = submit(emulator)["TaskUID"]
    emulator.public_key, real = "other-public", emulator.public_key
    try:
        theirs = emulator.call("RemoveBackground", {"RawImage": image_data_uri()},
                               private_key="other-private").json()["TaskUID"]
    finally:
        emulator.public_key = real
    assert [e["TaskUID"] for e in details(emulator, mine, theirs, "nosuchtask")] == [mine]
