"""The result image of a RemoveBackground task.

For now a placeholder cutout: the subject is taken to be the ellipse inscribed in the Box (or in
the middle of the image), with an edge softened by ErodeSize. The matting engine replaces the
body of `render_result`; its signature is the interface the server relies on.
"""

from __future__ import annotations

from PIL import Image, ImageDraw, ImageFilter

from picpik.models import RemoveBackgroundOptions

__all__ = ["render_result"]

_DEFAULT_ERODE = 15
_MARGIN = 0.1  # without a Box, the ellipse keeps this fraction of each side free


def render_result(image_bytes: bytes, options: RemoveBackgroundOptions) -> bytes:
    """A PNG of the input's size: RGBA cutout, or the 'L' mask alone when OnlyMask is set."""
    # The matting engine (README, "matting"); imported here so only rendering loads OpenCV.
    from emulator.matting import render

    return render(image_bytes, options)


def _placeholder_mask(size: tuple[int, int], options: RemoveBackgroundOptions) -> Image.Image:
    width, height = size
    if options.box is not None:
        x1, y1, x2, y2 = options.box
    else:
        x1, y1 = round(width * _MARGIN), round(height * _MARGIN)
        x2, y2 = width - x1, height - y1
    mask = Image.new("L", size, 0)
    ImageDraw.Draw(mask).ellipse((x1, y1, max(x1, x2 - 1), max(y1, y2 - 1)), fill=255)
    erode = _DEFAULT_ERODE if options.erode_size is None else options.erode_size
    if erode:
        mask = mask.filter(ImageFilter.GaussianBlur(erode / 3))
    return mask


def _with_alpha(source: Image.Image, mask: Image.Image) -> Image.Image:
    rgba = source.convert("RGBA")
    rgba.putalpha(mask)
    return rgba
