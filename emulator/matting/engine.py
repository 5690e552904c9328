"""The matting engine: segment, build the trimap, refine the alpha, return a PNG.

Segmentation runs at a working resolution (longest side `WORKING_SIDE`): GrabCut by default,
or a U2Net-family ONNX model when one is configured. The trimap and the guided filter's
coefficients are computed there too; the coefficients are then upsampled and applied to the
full-size image, so the cost of a large photo is mostly decoding and encoding.
"""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

from emulator.matting import neural
from emulator.matting.imageio import decode_rgb, encode_png
from emulator.matting.profile import Refinement, refinement_for
from emulator.matting.refine import guided_coefficients
from emulator.matting.segment import grabcut_subject
from emulator.matting.trimap import (
    BACKGROUND,
    FOREGROUND,
    build_trimap,
    edge_ramp,
    soft_mask,
)
from picpik.models import RemoveBackgroundOptions

__all__ = ["WORKING_SIDE", "cutout_alpha", "render"]

WORKING_SIDE = 512
Box = tuple[int, int, int, int]


def render(
    image_bytes: bytes, options: RemoveBackgroundOptions, model_path: Path | None = None,
    *, plain: bool = False,
) -> bytes:
    """The cutout of an image as PNG bytes: RGBA with the subject opaque, or with OnlyMask the
    'L' mask alone; both the input's size. `plain`: no matting, the whole image opaque (almost
    free, for benchmarks of the pipeline itself). Raises InvalidInput for an unreadable image
    or a Box outside it."""
    rgb = decode_rgb(image_bytes)
    options.check_box_inside(rgb.shape[1], rgb.shape[0])
    alpha = (np.full(rgb.shape[:2], 255, dtype=np.uint8) if plain
             else cutout_alpha(rgb, options, model_path))
    return encode_png(rgb, alpha, bool(options.only_mask))


def _working_copy(rgb: np.ndarray) -> tuple[np.ndarray, float]:
    scale = min(1.0, WORKING_SIDE / max(rgb.shape[:2]))
    if scale == 1.0:
        return rgb, 1.0
    size = (max(1, round(rgb.shape[1] * scale)), max(1, round(rgb.shape[0] * scale)))
    return cv2.resize(rgb, size, interpolation=cv2.INTER_AREA), scale


def _scaled_box(box: Box | None, scale: float, shape: tuple[int, ...]) -> Box | None:
    if box is None:
        return None
    x1, y1, x2, y2 = (round(value * scale) for value in box)
    return x1, y1, max(x1 + 1, min(x2, shape[1])), max(y1 + 1, min(y2, shape[0]))


def _segment(
    small: np.ndarray, box: Box | None, model_path: Path | None, softness: float
) -> np.ndarray:
    """The uint8 soft mask of the subject at working size."""
    if neural.model_available(model_path):
        assert model_path is not None
        mask = neural.saliency(small, model_path)
        if box is not None:
            inside = np.zeros(mask.shape, bool)
            inside[box[1] : box[3], box[0] : box[2]] = True
            mask = np.where(inside, mask, 0).astype(np.uint8)
        return mask
    return soft_mask(grabcut_subject(small, box), softness)


def _refine(
    rgb: np.ndarray, small: np.ndarray, mask: np.ndarray, settings: Refinement, scale: float
) -> tuple[np.ndarray, np.ndarray]:
    """Alpha (float, full size) and trimap (full size) from the working-size soft mask."""
    erode = round(settings.erode_px * scale)
    trimap = build_trimap(
        mask, settings.foreground_threshold, settings.background_threshold, erode
    )
    guide = small.astype(np.float32) * np.float32(1 / 255)
    radius = max(1, round(settings.radius_px * scale))
    # Half the feathering ramp across the band (what ErodeSize asks for), half the segmenter's
    # own soft mask: a model's saliency carries real edge detail, and where the band is wide and
    # the ramp knows little (a noisy mask leaves small sure regions) the mask still decides.
    source = 0.5 * edge_ramp(trimap, mask) + mask.astype(np.float32) * np.float32(0.5 / 255)
    coefficients = guided_coefficients(guide, source, radius, settings.eps)
    if scale == 1.0:
        return coefficients.apply(guide), trimap
    size = (rgb.shape[1], rgb.shape[0])
    return coefficients.apply_upsampled(rgb), cv2.resize(
        trimap, size, interpolation=cv2.INTER_NEAREST
    )


def cutout_alpha(
    rgb: np.ndarray, options: RemoveBackgroundOptions, model_path: Path | None = None
) -> np.ndarray:
    """The uint8 alpha (h, w) of an RGB image's subject under one job's options."""
    settings = refinement_for(options)
    small, scale = _working_copy(rgb)
    box = _scaled_box(options.box, scale, small.shape)
    mask = _segment(small, box, model_path, settings.softness_px * scale)
    alpha, trimap = _refine(rgb, small, mask, settings, scale)
    if settings.edge_gain != 1.0:
        alpha = (alpha - 0.5) * np.float32(settings.edge_gain) + np.float32(0.5)
    alpha[trimap == FOREGROUND] = 1.0
    alpha[trimap == BACKGROUND] = 0.0
    if options.box is not None:  # the subject lies inside the Box, by the API's definition
        x1, y1, x2, y2 = options.box
        outside = np.ones(alpha.shape, bool)
        outside[y1:y2, x1:x2] = False
        alpha[outside] = 0.0
    return np.rint(np.clip(alpha, 0.0, 1.0) * 255).astype(np.uint8)
