"""The result image of a RemoveBackground task, made by the matting engine (docs/matting.md)."""

from __future__ import annotations

from pathlib import Path

from picpik.models import RemoveBackgroundOptions

__all__ = ["render_result"]


def render_result(
    image_bytes: bytes, options: RemoveBackgroundOptions, model_path: Path | None = None,
    *, plain: bool = False,
) -> bytes:
    """A PNG of the input's size: RGBA cutout, or the 'L' mask alone when OnlyMask is set.
    `plain`: the whole image kept (alpha opaque), no matting (`--render plain`)."""
    # Imported here so that only the threads that render load OpenCV (and onnxruntime).
    from emulator.matting import render

    return render(image_bytes, options, model_path, plain=plain)
