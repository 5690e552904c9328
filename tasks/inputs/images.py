"""Checks on an image's bytes before anything decodes its pixels: format, size, pixel count."""

from __future__ import annotations

import io
import warnings
from dataclasses import dataclass

from PIL import Image, UnidentifiedImageError

from config import Settings
from picpik.errors import InvalidInput

__all__ = ["ImageInfo", "inspect_image"]


@dataclass(frozen=True)
class ImageInfo:
    format: str
    mime: str
    width: int
    height: int


def inspect_image(data: bytes, settings: Settings) -> ImageInfo:
    """Read only the header: the format must be allowed and the pixels within the cap."""
    if len(data) > settings.max_image_bytes:
        raise InvalidInput(f"image is larger than {settings.max_image_bytes} bytes",
                           field="reference")
    formats = sorted(settings.image_formats)
    try:
        with warnings.catch_warnings():
            # Pillow only warns about decompression bombs below twice its own cap.
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(io.BytesIO(data), formats=formats) as image:
                fmt, (width, height) = str(image.format), image.size
    except (UnidentifiedImageError, Image.DecompressionBombError,
            Image.DecompressionBombWarning) as exc:
        raise InvalidInput(f"not an image in an allowed format ({', '.join(formats)})",
                           field="reference") from exc
    except (OSError, ValueError, SyntaxError) as exc:
        raise InvalidInput(f"unreadable image: {exc}", field="reference") from exc
    if width * height > settings.max_image_pixels:
        raise InvalidInput(f"image has {width}x{height} pixels, more than the cap of "
                           f"{settings.max_image_pixels}", field="reference")
    if fmt == "MPO":  # a JPEG with extra frames (many phone photos): the API gets a JPEG
        fmt = "JPEG"
    return ImageInfo(fmt, Image.MIME.get(fmt, "application/octet-stream"), width, height)
