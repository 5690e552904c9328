"""RawImage: a data URI or bare base64 that must decode to an image Pillow can open."""

from __future__ import annotations

import base64
import binascii
import io
import warnings

from PIL import Image, UnidentifiedImageError

from emulator.retcodes import Refusal, RetCode

__all__ = ["decode_problem", "decode_raw_image"]

_DATA_URI_HEADER_MAX = 128  # 'data:image/jpeg;base64,' and friends are far shorter


def decode_raw_image(raw: object) -> tuple[bytes, tuple[int, int]]:
    """The image bytes and (width, height); a Refusal naming RawImage when it is not an image."""
    if not isinstance(raw, str) or not raw:
        raise _bad("required: the image as base64 or a data URI")
    payload = _strip_data_uri(raw)
    try:
        data = base64.b64decode(payload, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise _bad("not valid base64") from exc
    if not data:
        raise _bad("decodes to no bytes")
    return data, _image_size(data)


def _strip_data_uri(raw: str) -> str:
    if not raw.startswith("data:"):
        return raw
    comma = raw.find(",", 0, _DATA_URI_HEADER_MAX)
    if comma < 0 or not raw[5:comma].endswith(";base64"):
        raise _bad("a data URI must look like data:image/png;base64,...")
    return raw[comma + 1 :]


def _image_size(data: bytes) -> tuple[int, int]:
    # Only the header is read: enough to know it is an image and how large it is.
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(io.BytesIO(data)) as image:
                return image.size
    except (UnidentifiedImageError, Image.DecompressionBombError, Image.DecompressionBombWarning,
            OSError, SyntaxError, ValueError) as exc:
        raise _bad("not an image this server can read") from exc


def decode_problem(data: bytes) -> str | None:
    """Why the whole image cannot be decoded, or None. A JPEG is decoded at 1/8 scale (every
    block is still read), so a large photo costs milliseconds, not a full decode."""
    try:
        with Image.open(io.BytesIO(data)) as image:
            if image.format in ("JPEG", "MPO"):
                image.draft(image.mode, (max(1, image.width // 8), max(1, image.height // 8)))
            image.load()
    except (OSError, SyntaxError, ValueError, EOFError, Image.DecompressionBombError) as exc:
        return str(exc) or type(exc).__name__
    return None


def _bad(reason: str) -> Refusal:
    return Refusal(RetCode.BAD_PARAMETER, "bad_parameter", reason, field="RawImage")
