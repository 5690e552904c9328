"""What the client must know of an image before sending it: that it is what its MIME type says,
and its size (for the Box rule and the pixel cap). Only the header is read, nothing is decoded."""

from __future__ import annotations

import io
import warnings

from PIL import Image, UnidentifiedImageError

from picpik.errors import InvalidInput

__all__ = ["IMAGE_MIME_TYPES", "image_size"]

# MIME type -> Pillow's format name.
IMAGE_MIME_TYPES = {
    "image/jpeg": "JPEG",
    "image/png": "PNG",
    "image/webp": "WEBP",
    "image/bmp": "BMP",
    "image/tiff": "TIFF",
}


def image_size(image: bytes | bytearray | memoryview, mime: str, max_pixels: int,
               job_id: str | None = None) -> tuple[int, int]:
    """(width, height) of an image of type `mime`; InvalidInput naming RawImage otherwise."""
    expected = IMAGE_MIME_TYPES[mime]
    try:
        with warnings.catch_warnings():
            # Pillow only warns below twice its own cap; any bomb warning is a refusal here.
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(io.BytesIO(image), formats=[expected]) as opened:
                width, height = opened.size
    except (UnidentifiedImageError, Image.DecompressionBombError, Image.DecompressionBombWarning,
            OSError, SyntaxError, ValueError) as exc:
        raise InvalidInput(f"not a readable {expected} image (as {mime} says)",
                           field="RawImage", job_id=job_id) from exc
    if width * height > max_pixels:
        raise InvalidInput(f"{width}x{height} is over the cap of {max_pixels} pixels",
                           field="RawImage", job_id=job_id)
    return width, height
