"""Checks on an image's bytes: first the header (format, size, pixel count: nothing decoded),
then, once the caps hold, one cheap full decode (a truncated or corrupt file never costs a call).
"""

from __future__ import annotations

import io
import warnings
from dataclasses import dataclass

from PIL import Image, UnidentifiedImageError

from config import Settings
from picpik.errors import InvalidInput

__all__ = ["ImageInfo", "check_decodes", "inspect_image"]

# A JPEG is decoded at 1/8 scale: every entropy-coded block is still read (so truncation and
# broken data show), but the inverse DCT and the pixels cost a fraction of a full decode.
JPEG_DRAFT_SCALE = 8


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
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        raise InvalidInput(f"a decompression bomb: {exc}", field="reference") from exc
    except UnidentifiedImageError as exc:
        what = "an empty file" if not data else "not an image in an allowed format"
        raise InvalidInput(f"{what} ({', '.join(formats)})", field="reference") from exc
    except (OSError, ValueError, SyntaxError) as exc:
        raise InvalidInput(f"unreadable image: {exc}", field="reference") from exc
    if width * height > settings.max_image_pixels:
        raise InvalidInput(f"image has {width}x{height} pixels, more than the cap of "
                           f"{settings.max_image_pixels}", field="reference")
    if fmt == "MPO":  # a JPEG with extra frames (many phone photos): the API gets a JPEG
        fmt = "JPEG"
    return ImageInfo(fmt, Image.MIME.get(fmt, "application/octet-stream"), width, height)


def check_decodes(data: bytes, info: ImageInfo) -> None:
    """Decode the whole image once (a JPEG at reduced scale), after inspect_image's caps held:
    a file whose header is fine but whose data is cut short or broken is refused here, before
    any call, instead of being paid for and failing at the API. Memory is bounded by the pixel
    cap (a JPEG needs 1/64 of it)."""
    try:
        with Image.open(io.BytesIO(data), formats=[info.format, "MPO"]) as image:
            if image.format in ("JPEG", "MPO"):
                image.draft(image.mode, (max(1, image.width // JPEG_DRAFT_SCALE),
                                         max(1, image.height // JPEG_DRAFT_SCALE)))
            image.load()
    except (OSError, ValueError, SyntaxError, EOFError, Image.DecompressionBombError) as exc:
        raise InvalidInput(f"{info.format} image cannot be decoded: {exc}",
                           field="reference") from exc
