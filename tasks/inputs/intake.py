"""One image in, checked: fetched by its reference, its header within the caps, decoded once.

Every error raised here names the reference (credentials blanked, long references shortened),
so the job's error message says which image and why, whichever check refused it.
"""

from __future__ import annotations

import re

from config import Settings
from picpik.errors import CutoutError
from picpik.models import RemoveBackgroundOptions
from tasks.inputs.fetch import fetch
from tasks.inputs.images import ImageInfo, check_decodes, inspect_image

__all__ = ["load_image", "shown_reference"]

MAX_SHOWN_CHARS = 160  # a data: URI or a runaway path is cut here
_USERINFO = re.compile(r"(//)[^/?#@]*@")


def load_image(reference: str, settings: Settings,
               options: RemoveBackgroundOptions | None = None) -> tuple[bytes, ImageInfo]:
    """The image's bytes and what its header says (and the options' Box inside it); raises
    InvalidInput (or a RetryableError when the source may answer later) naming the reference."""
    try:
        data = fetch(reference, settings)
        info = inspect_image(data, settings)
        if options is not None:  # before the decode: a Box outside is known from the header
            options.check_box_inside(info.width, info.height)
        check_decodes(data, info)
    except CutoutError as exc:
        _name_the_reference(exc, reference)
        raise
    return data, info


def shown_reference(reference: str) -> str:
    """The reference as an error message may show it: no password, not overly long."""
    shown = _USERINFO.sub(r"\1***@", reference)
    shown = "".join(char if char.isprintable() else repr(char)[1:-1] for char in shown)
    if len(shown) > MAX_SHOWN_CHARS:
        shown = shown[: MAX_SHOWN_CHARS - 3] + "..."
    return shown


def _name_the_reference(exc: CutoutError, reference: str) -> None:
    shown = shown_reference(reference)
    if shown not in exc.message:
        exc.message = f"{shown}: {exc.message}"
        exc.args = (exc.message,)
