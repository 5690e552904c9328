"""Typed requests and responses of the API, with every parameter rule in one place.

The rules are those of `shared/api/CONTRACT.md`. The local API server validates with the same
models, so a rule changed here changes on both sides.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    StrictBool,
    StrictInt,
    StrictStr,
    ValidationError,
    field_validator,
)

from picpik.errors import InvalidInput

__all__ = [
    "MAX_TASK_UIDS_PER_CALL",
    "ListTasksDetailsRequest",
    "RemoveBackgroundOptions",
    "RemoveBackgroundResponse",
    "TaskDetail",
    "TaskState",
    "invalid_input_from",
    "parse_options",
]

MAX_TASK_UIDS_PER_CALL = 1000  # our own cap; the docs give none

Threshold = Annotated[StrictInt, Field(ge=0, le=255)]
TaskState = Literal["pending", "finished", "failed"]


class _Model(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid", populate_by_name=True)


class RemoveBackgroundOptions(_Model):
    """The optional parameters of RemoveBackground; unset ones are left to the API's defaults."""

    box: tuple[StrictInt, StrictInt, StrictInt, StrictInt] | None = Field(None, alias="Box")
    remove_type: Literal["General", "Anime"] | None = Field(None, alias="RemoveType")
    erode_size: Annotated[StrictInt, Field(ge=0, le=40)] | None = Field(None, alias="ErodeSize")
    foreground_threshold: Threshold | None = Field(None, alias="ForegroundThreshold")
    background_threshold: Threshold | None = Field(None, alias="BackgroundThreshold")
    hair_optimization: Literal["auto", "on", "off"] | None = Field(None, alias="HairOptimization")
    only_mask: StrictBool | None = Field(None, alias="OnlyMask")

    @field_validator("box", mode="before")
    @classmethod
    def _box_has_four(cls, box: Any) -> Any:
        # Said once, plainly, instead of pydantic's per-position "Field required".
        if box is not None and (not isinstance(box, list | tuple) or len(box) != 4):
            raise ValueError("must be a list of 4 integers x1, y1, x2, y2")
        return box

    @field_validator("box")
    @classmethod
    def _box_in_order(
        cls, box: tuple[int, int, int, int] | None
    ) -> tuple[int, int, int, int] | None:
        if box is None:
            return None
        x1, y1, x2, y2 = box
        if min(box) < 0:
            raise ValueError("coordinates must not be negative")
        if not (x1 < x2 and y1 < y2):
            raise ValueError("must be x1,y1,x2,y2 with x1 < x2 and y1 < y2")
        return box

    def check_box_inside(self, width: int, height: int) -> None:
        """Raise InvalidInput when the Box reaches outside a width x height image."""
        if self.box is None:
            return
        _, _, x2, y2 = self.box
        if x2 > width or y2 > height:
            raise InvalidInput(
                f"Box {list(self.box)} reaches outside the {width}x{height} image", field="Box"
            )

    def to_params(self) -> dict[str, Any]:
        """The API parameters this job set, under their API names (Box as a list)."""
        params = self.model_dump(by_alias=True, exclude_none=True)
        if "Box" in params:
            params["Box"] = list(params["Box"])
        return params


def parse_options(values: Mapping[str, Any]) -> RemoveBackgroundOptions:
    """Validate options given by API name or Python name; raise InvalidInput naming the field."""
    try:
        return RemoveBackgroundOptions.model_validate(dict(values))
    except ValidationError as exc:
        raise invalid_input_from(exc) from exc


def invalid_input_from(exc: ValidationError) -> InvalidInput:
    """The first problem of a pydantic error as our InvalidInput, naming the API field."""
    first = exc.errors()[0]
    loc = [_api_name(part) for part in first["loc"]]
    field = ".".join(loc) or "request"
    reason = first["msg"].removeprefix("Value error, ")  # pydantic's prefix for our own rules
    return InvalidInput(f"{reason} (got {_shown(first.get('input'))})", field=field)


def _api_name(part: str | int) -> str:
    # Options given by Python name are reported under the API's name, which users know.
    name = str(part)
    for model in (RemoveBackgroundOptions, ListTasksDetailsRequest):
        info = model.model_fields.get(name)
        if info is not None and info.alias:
            return info.alias
    return name


def _shown(value: Any) -> str:
    """A short, safe rendering of a bad value (never a whole image)."""
    if isinstance(value, str) and len(value) > 64:
        return f"a string of {len(value)} characters"
    if isinstance(value, int | float | str | bool | None):
        return repr(value)
    small = isinstance(value, list | tuple) and len(value) <= 8
    if small and all(isinstance(item, int | float | bool | None) for item in value):
        return repr(list(value))
    return type(value).__name__


class ListTasksDetailsRequest(_Model):
    """The TaskUIDs to ask about in one ListTasksDetails call."""

    task_uids: list[Annotated[StrictStr, Field(min_length=1, max_length=128)]] = Field(
        alias="TaskUIDList", min_length=1, max_length=MAX_TASK_UIDS_PER_CALL
    )


class RemoveBackgroundResponse(_Model):
    """A RemoveBackground call the API accepted: the task to poll."""

    task_uid: str
    request_uuid: str | None = None


class TaskDetail(_Model):
    """One entry of ListTasksDetails' TaskDetailList."""

    task_uid: str
    action: str = ""
    status: str = ""
    img_list: tuple[str, ...] = ()
    consume_api_point: float = 0
    error_code: int = 0
    error_message: str = ""

    @property
    def state(self) -> TaskState:
        """Finished with no error and images: finished; Error or an ErrorCode: failed;
        anything else, unknown strings included, still pending."""
        if self.status == "Error" or self.error_code != 0:
            return "failed"
        if self.status == "Finished" and self.img_list:
            return "finished"
        return "pending"

    @classmethod
    def from_api(cls, raw: Mapping[str, Any]) -> TaskDetail:
        return cls(
            task_uid=str(raw.get("TaskUID", "")),
            action=str(raw.get("Action", "")),
            status=str(raw.get("Status", "")),
            img_list=tuple(str(url) for url in raw.get("ImgList") or ()),
            consume_api_point=float(raw.get("ConsumeApiPoint") or 0),
            error_code=int(raw.get("ErrorCode") or 0),
            # The docs spell it ErrorMassage; accept the corrected spelling too.
            error_message=str(raw.get("ErrorMassage") or raw.get("ErrorMessage") or ""),
        )
