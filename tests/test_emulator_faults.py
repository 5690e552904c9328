"""The local API server's rate limit, credits and injected faults, seen over real HTTP."""

from __future__ import annotations

import json
import socket
import time
from collections import Counter
from typing import Any

import pytest
import requests

from picpik.signing import sign
from tests.support.emulator_server import EmulatorProcess, image_data_uri


def retcode(emulator: EmulatorProcess, action: str = "ListRunningTasks", **kw: Any) -> int:
    code: int = emulator.call(action, **kw).json()["RetCode"]
    return code


def submit_retcode(emulator: EmulatorProcess) -> int:
    return retcode(emulator, "RemoveBackground", params={"RawImage": image_data_uri()})


def signed_body(emulator: EmulatorProcess, action: str) -> dict[str, Any]:
    body = {"Action": action, "PublicKey": emulator.public_key}
    return {**body, "Signature": sign(body, emulator.private_key)}


def test_calls_beyond_the_rate_limit_get_140_and_admitted_calls_never_exceed_it(
    emulator: EmulatorProcess
) -> None:
    # 5 calls per 10 s window: twelve quick calls cannot all fit, however slow the machine.
    emulator.configure(rate_limit=0.5, rate_window_s=10)
    codes = Counter(retcode(emulator) for _ in range(12))
    assert codes == {0: 5, 140: 7}
    stats = emulator.key_stats()
    assert stats["calls"]["ListRunningTasks"] == {"ok": 5, "throttled": 7}
    assert stats["max_admitted_in_window"] <= 5
    assert stats["max_calls_in_window"] >= stats["max_admitted_in_window"]


def test_the_rate_limit_counts_every_action_of_a_key_together(emulator: EmulatorProcess) -> None:
    emulator.configure(rate_limit=0.2, rate_window_s=10)  # 2 calls per window
    assert [submit_retcode(emulator), retcode(emulator), retcode(emulator)] == [0, 0, 140]


def test_a_throttle_message_states_the_calls_allowed_in_the_window(
    emulator: EmulatorProcess
) -> None:
    emulator.configure(rate_limit=0.1, rate_window_s=20)  # 2 calls per 20 s window
    answers = [emulator.call("ListRunningTasks").json() for _ in range(3)]
    assert [answer["RetCode"] for answer in answers] == [0, 0, 140]
    assert answers[-1]["Message"] == "over the rate limit of 2 calls per 20 s"


def test_a_call_is_admitted_when_its_body_has_arrived_not_when_it_began(
    emulator: EmulatorProcess
) -> None:
    # The limiter must judge a call at the time it admits it: judged by when it began, this
    # slow call would be counted in the window of a call that came and went meanwhile.
    emulator.configure(rate_limit=1, rate_window_s=1)
    body = json.dumps(signed_body(emulator, "ListRunningTasks")).encode()
    with socket.create_connection(("127.0.0.1", emulator.port), timeout=10) as slow:
        slow.sendall(b"POST / HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                     b"Content-Length: %d\r\n\r\n" % len(body) + body[:10])
        time.sleep(0.2)  # the server has begun the slow call
        assert retcode(emulator) == 0  # another call takes the window's one slot
        time.sleep(1.2)  # that window passes
        slow.sendall(body[10:])
        answer = b""
        while not answer.endswith(b"}") and (chunk := slow.recv(65536)):
            answer += chunk
    assert b'"RetCode":0' in answer, answer
    assert emulator.key_stats()["max_admitted_in_window"] == 1


def test_a_throttle_can_be_http_429_with_retry_after(emulator: EmulatorProcess) -> None:
    emulator.configure(rate_limit=0.1, rate_window_s=10, throttle_http_status=429)
    assert retcode(emulator) == 0
    response = emulator.call("ListRunningTasks")
    assert response.status_code == 429 and response.json()["RetCode"] == 140
    assert 1 <= int(response.headers["Retry-After"]) <= 10


def test_each_remove_background_spends_one_credit_and_none_left_gets_130(
    emulator: EmulatorProcess
) -> None:
    emulator.configure(credits={emulator.public_key: 2})
    assert [submit_retcode(emulator) for _ in range(3)] == [0, 0, 130]
    assert retcode(emulator) == 0  # listing costs nothing
    stats = emulator.key_stats()
    assert (stats["credits_spent"], stats["credits_left"]) == (2, 0)
    assert stats["calls"]["RemoveBackground"] == {"ok": 2, "no_credits": 1}


def test_credits_can_be_set_for_every_key_at_once_and_lifted(emulator: EmulatorProcess) -> None:
    emulator.configure(credits=1)
    assert [submit_retcode(emulator), submit_retcode(emulator)] == [0, 130]
    emulator.configure(credits=None)
    assert submit_retcode(emulator) == 0
    assert emulator.key_stats()["credits_left"] is None


def test_injected_5xx_answers_http_503_and_is_counted(emulator: EmulatorProcess) -> None:
    emulator.configure(faults={"error_5xx": 1.0})
    response = emulator.call("ListRunningTasks")
    assert response.status_code == 503 and response.json()["RetCode"] == 503
    assert emulator.key_stats()["calls"] == {"ListRunningTasks": {"fault_5xx": 1}}


def test_an_injected_drop_closes_the_connection_without_an_answer(
    emulator: EmulatorProcess
) -> None:
    emulator.configure(faults={"drop": 1.0})
    with pytest.raises(requests.ConnectionError):
        emulator.call("RemoveBackground", {"RawImage": image_data_uri()})
    assert emulator.key_stats()["calls"] == {"RemoveBackground": {"fault_drop": 1}}
    assert emulator.key_stats()["credits_spent"] == 0  # dropped before it was processed


def test_a_drop_after_processing_loses_the_answer_of_an_accepted_and_paid_call(
    emulator: EmulatorProcess
) -> None:
    emulator.configure(faults={"drop_after": 1.0})
    with pytest.raises(requests.ConnectionError):
        emulator.call("RemoveBackground", {"RawImage": image_data_uri()})
    emulator.configure(faults={"drop_after": 0.0})
    (call,) = emulator.calls(action="RemoveBackground")
    assert call["outcome"] == "fault_drop_after" and call["task_uid"]
    assert emulator.key_stats()["credits_spent"] == 1
    answer = emulator.call("ListTasksDetails", {"TaskUIDList": [call["task_uid"]]}).json()
    assert [e["TaskUID"] for e in answer["TaskDetailList"]] == [call["task_uid"]]


def test_an_injected_throttle_answers_140_whatever_the_rate(emulator: EmulatorProcess) -> None:
    emulator.configure(faults={"throttle": 1.0})
    assert retcode(emulator) == 140
    assert emulator.calls()[-1]["outcome"] == "fault_throttle"


def test_a_slow_answer_outlasts_a_short_client_timeout_but_the_call_is_processed(
    emulator: EmulatorProcess
) -> None:
    emulator.configure(faults={"slow_rate": 1.0, "slow_s": 3.0})
    with pytest.raises(requests.ReadTimeout):
        emulator.call("RemoveBackground", {"RawImage": image_data_uri()}, timeout=0.3)
    emulator.configure(faults={"slow_rate": 0.0})
    (call,) = emulator.calls(action="RemoveBackground")
    assert call["outcome"] == "ok" and call["slow"] and call["task_uid"]
    assert emulator.key_stats()["slow_answers"] == 1
    assert emulator.key_stats()["credits_spent"] == 1  # accepted, though the caller never knew


def test_a_fraction_of_tasks_can_be_made_to_end_in_error(emulator: EmulatorProcess) -> None:
    emulator.configure(queue_s=0, run_s=0, faults={"task_error": 1.0})
    uid = emulator.call("RemoveBackground", {"RawImage": image_data_uri()}).json()["TaskUID"]
    answer = emulator.call("ListTasksDetails", {"TaskUIDList": [uid]}).json()
    (entry,) = answer["TaskDetailList"]
    assert entry["Status"] == "Error" and entry["ErrorCode"] != 0
    assert entry["ImgList"] == [] and entry["ErrorMassage"]


def test_an_injected_result_fault_answers_503_and_the_next_download_succeeds(
    emulator: EmulatorProcess
) -> None:
    emulator.configure(queue_s=0, run_s=0, faults={"result_5xx": 1.0})
    uid = emulator.call("RemoveBackground", {"RawImage": image_data_uri()}).json()["TaskUID"]
    answer = emulator.call("ListTasksDetails", {"TaskUIDList": [uid]}).json()
    url = answer["TaskDetailList"][0]["ImgList"][0]
    assert requests.get(url, timeout=10).status_code == 503
    emulator.configure(faults={"result_5xx": 0.0})
    assert requests.get(url, timeout=10).status_code == 200


def test_slow_result_downloads_wait_before_answering_while_api_calls_do_not(
    emulator: EmulatorProcess
) -> None:
    emulator.configure(queue_s=0, run_s=0, faults={"result_slow_s": 0.5})
    uid = emulator.call("RemoveBackground", {"RawImage": image_data_uri()}).json()["TaskUID"]
    url = emulator.call("ListTasksDetails", {"TaskUIDList": [uid]}).json()[
        "TaskDetailList"][0]["ImgList"][0]
    started = time.monotonic()
    assert requests.get(url, timeout=10).status_code == 200
    assert time.monotonic() - started >= 0.5  # the held download waited at least that long
    assert emulator.call("ListTasksDetails", {"TaskUIDList": [uid]}).json()["RetCode"] == 0


def test_a_fault_fraction_hits_about_that_share_of_calls(emulator: EmulatorProcess) -> None:
    emulator.configure(faults={"error_5xx": 0.5})
    codes = Counter(retcode(emulator) for _ in range(200))
    assert set(codes) == {0, 503} and 50 <= codes[503] <= 150


def test_the_calls_log_has_time_key_action_outcome_and_request_uuid(
    emulator: EmulatorProcess
) -> None:
    emulator.call("ListRunningTasks", {"request_uuid": "r-7"})
    (call,) = emulator.calls()
    assert call["key"] == emulator.public_key and call["action"] == "ListRunningTasks"
    assert call["outcome"] == "ok" and call["request_uuid"] == "r-7" and call["t"] > 1e9


def test_config_changes_are_checked_and_a_wrong_field_is_refused(emulator: EmulatorProcess) -> None:
    response = requests.post(f"{emulator.base_url}/_admin/config", json={"rate_limt": 3},
                             timeout=10)
    assert response.status_code == 400 and "rate_limt" in response.json()["error"]
    response = requests.post(f"{emulator.base_url}/_admin/config",
                             json={"faults": {"drop": 2}}, timeout=10)
    assert response.status_code == 400 and "drop" in response.json()["error"]


def test_reset_forgets_calls_and_restores_the_start_up_configuration(
    emulator: EmulatorProcess
) -> None:
    emulator.configure(rate_limit=1, credits=0, faults={"error_5xx": 1.0})
    emulator.call("ListRunningTasks")
    emulator.reset()
    config = requests.get(f"{emulator.base_url}/_admin/config", timeout=10).json()
    assert config["rate_limit"] == 0 and config["faults"]["error_5xx"] == 0
    assert emulator.stats()["keys"] == {} and emulator.calls() == []
    assert submit_retcode(emulator) == 0
