"""Images broken the ways real files break: cut short (an upload or a copy that stopped) or
with noise in the middle (a bad disk, a bad transfer), the header left intact."""

from __future__ import annotations

import io

import numpy as np
from PIL import Image

__all__ = ["corrupted", "photo_bytes", "truncated"]


def photo_bytes(fmt: str, size: tuple[int, int] = (320, 240)) -> bytes:
    """A smooth, photo-like image (so compressed formats have real entropy data)."""
    rng = np.random.default_rng(7)
    small = (rng.random((size[1] // 8, size[0] // 8, 3)) * 255).astype("uint8")
    image = Image.fromarray(small).resize(size, Image.Resampling.BICUBIC)
    buffer = io.BytesIO()
    image.save(buffer, format=fmt)
    return buffer.getvalue()


def truncated(data: bytes) -> bytes:
    """The first two thirds: the header intact, the pixel data cut short."""
    return data[: len(data) * 2 // 3]


def corrupted(data: bytes) -> bytes:
    """200 bytes of noise in the middle of the compressed data."""
    broken = bytearray(data)
    middle = len(data) // 2
    broken[middle:middle + 200] = np.random.default_rng(3).bytes(200)
    return bytes(broken)
