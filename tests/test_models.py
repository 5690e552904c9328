"""Every RemoveBackground parameter rule: a bad value is an InvalidInput naming the API field."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from picpik.errors import InvalidInput
from picpik.models import (
    MAX_TASK_UIDS_PER_CALL,
    ListTasksDetailsRequest,
    RemoveBackgroundOptions,
    TaskDetail,
    parse_options,
)

# No deadline: on a busy shared machine a slow example is not a wrong one.
RELAXED = settings(deadline=None)

BAD_OPTIONS: list[tuple[dict[str, Any], str]] = [
    ({"ErodeSize": 41}, "ErodeSize"),
    ({"ErodeSize": -1}, "ErodeSize"),
    ({"ErodeSize": 15.0}, "ErodeSize"),
    ({"ErodeSize": True}, "ErodeSize"),
    ({"ForegroundThreshold": 256}, "ForegroundThreshold"),
    ({"ForegroundThreshold": -1}, "ForegroundThreshold"),
    ({"BackgroundThreshold": 256}, "BackgroundThreshold"),
    ({"BackgroundThreshold": "15"}, "BackgroundThreshold"),
    ({"RemoveType": "Photo"}, "RemoveType"),
    ({"RemoveType": "general"}, "RemoveType"),
    ({"HairOptimization": "yes"}, "HairOptimization"),
    ({"HairOptimization": True}, "HairOptimization"),
    ({"OnlyMask": "true"}, "OnlyMask"),
    ({"OnlyMask": 1}, "OnlyMask"),
    ({"Box": [10, 10, 5, 20]}, "Box"),  # x1 > x2
    ({"Box": [10, 30, 20, 20]}, "Box"),  # y1 > y2
    ({"Box": [10, 10, 10, 20]}, "Box"),  # empty width
    ({"Box": [1, 2, 3]}, "Box"),
    ({"Box": [1, 2, 3, 4, 5]}, "Box"),
    ({"Box": "1,2,3,4"}, "Box"),
    ({"Box": [-1, 0, 3, 4]}, "Box"),
    ({"Box": [0, 0, 3.5, 4]}, "Box.2"),
    ({"Foo": 1}, "Foo"),
    ({"erode_size": 99}, "ErodeSize"),  # Python names are reported under the API's name
    ({"only_mask": "no"}, "OnlyMask"),
]


@pytest.mark.parametrize(("values", "field"), BAD_OPTIONS, ids=lambda v: str(v))
def test_each_bad_option_is_refused_naming_its_field(values: dict[str, Any], field: str) -> None:
    with pytest.raises(InvalidInput) as caught:
        parse_options(values)
    assert caught.value.field == field
    assert field in str(caught.value)
    assert caught.value.code == "invalid_input"


def test_a_refusal_shows_the_bad_value_but_never_a_whole_image() -> None:
    with pytest.raises(InvalidInput) as caught:
        parse_options({"RemoveType": "x" * 10_000})
    assert "10000 characters" in str(caught.value)
    assert "xxxxxxxxxx" not in str(caught.value)


def test_a_box_reaching_outside_the_image_is_refused_naming_box() -> None:
    options = parse_options({"Box": [0, 0, 101, 50]})
    with pytest.raises(InvalidInput) as caught:
        options.check_box_inside(100, 100)
    assert caught.value.field == "Box"
    assert "100x100" in str(caught.value)


def test_a_box_exactly_on_the_image_edge_is_inside() -> None:
    parse_options({"Box": [0, 0, 100, 80]}).check_box_inside(100, 80)


@RELAXED
@given(
    erode=st.integers(0, 40),
    foreground=st.integers(0, 255),
    background=st.integers(0, 255),
    remove_type=st.sampled_from(["General", "Anime"]),
    hair=st.sampled_from(["auto", "on", "off"]),
    mask=st.booleans(),
)
def test_every_value_inside_the_ranges_is_accepted_and_sent_as_given(
    erode: int, foreground: int, background: int, remove_type: str, hair: str, mask: bool
) -> None:
    values = {"ErodeSize": erode, "ForegroundThreshold": foreground,
              "BackgroundThreshold": background, "RemoveType": remove_type,
              "HairOptimization": hair, "OnlyMask": mask, "Box": [1, 2, 3, 4]}
    assert parse_options(values).to_params() == values


def test_unset_options_are_not_sent_so_the_api_applies_its_defaults() -> None:
    assert parse_options({"erode_size": 3}).to_params() == {"ErodeSize": 3}
    assert RemoveBackgroundOptions().to_params() == {}


@pytest.mark.parametrize(
    "uids", [[], [""], ["x" * 129], [1], ["a"] * (MAX_TASK_UIDS_PER_CALL + 1)], ids=str
)
def test_a_bad_task_uid_list_is_refused(uids: list[Any]) -> None:
    with pytest.raises(ValueError, match="TaskUIDList"):
        ListTasksDetailsRequest.model_validate({"TaskUIDList": uids})


@pytest.mark.parametrize(
    ("raw", "state"),
    [
        ({"TaskUID": "t", "Status": "Finished", "ImgList": ["http://x/a.png"]}, "finished"),
        ({"TaskUID": "t", "Status": "Finished", "ImgList": []}, "pending"),
        ({"TaskUID": "t", "Status": "Error"}, "failed"),
        ({"TaskUID": "t", "Status": "Finished", "ImgList": ["u"], "ErrorCode": 7}, "failed"),
        ({"TaskUID": "t", "Status": "Queuing"}, "pending"),
        ({"TaskUID": "t", "Status": "SomethingNew"}, "pending"),
    ],
)
def test_task_states_follow_the_contract(raw: dict[str, Any], state: str) -> None:
    assert TaskDetail.from_api(raw).state == state


def test_task_detail_reads_the_docs_spelling_of_the_error_message() -> None:
    detail = TaskDetail.from_api({"TaskUID": "t", "ErrorCode": 3, "ErrorMassage": "bad image",
                                  "ConsumeApiPoint": 1})
    assert (detail.error_message, detail.consume_api_point) == ("bad image", 1.0)
