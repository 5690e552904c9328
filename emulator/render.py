"""The result image of a RemoveBackground task, made by the matting engine (docs/matting.md)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from picpik.models import RemoveBackgroundOptions

__all__ = ["render_result"]


def render_result(
    image_bytes: bytes, options: RemoveBackgroundOptions, model_path: Path | None = None,
    *, plain: bool = False,
) -> bytes:
    """A PNG of the input's size: RGBA cutout, or the 'L' mask alone when OnlyMask is set.
    `plain`: the whole image kept (alpha opaque), no matting: results that cost the server
    almost nothing, for benchmarks of the pipeline itself (`--render plain`)."""
    # Imported here so that only the threads that render load OpenCV (and onnxruntime).
    from emulator.matting import render
    from emulator.matting.imageio import decode_rgb, encode_png

    if not plain:
        return render(image_bytes, options, model_path)
    rgb = decode_rgb(image_bytes)
    options.check_box_inside(rgb.shape[1], rgb.shape[0])
    alpha = np.full(rgb.shape[:2], 255, dtype=np.uint8)
    return encode_png(rgb, alpha, bool(options.only_mask))
