"""How RemoveBackground's options map to the matting engine's settings.

Lengths are in pixels of the full-size image; the engine scales them to its working resolution.
"""

from __future__ import annotations

from dataclasses import dataclass

from picpik.models import RemoveBackgroundOptions

__all__ = ["Refinement", "refinement_for"]

# The API's defaults (CONTRACT.md), applied when a job leaves an option unset.
DEFAULT_ERODE_SIZE = 15
DEFAULT_FOREGROUND_THRESHOLD = 240
DEFAULT_BACKGROUND_THRESHOLD = 15

# HairOptimization: (band scale, extra band px, guided-filter radius px, eps).
# "on" widens the unknown band and lets the filter follow finer image detail (small eps);
# "off" narrows the band and smooths more (large eps); "auto" sits between.
_HAIR = {
    "on": (1.5, 2, 6, 1e-4),
    "auto": (1.0, 0, 4, 1e-3),
    "off": (0.6, 0, 3, 1e-2),
}
# Anime art has hard, drawn outlines: half the band, half the radius, and a contrast gain
# that pushes the remaining soft pixels towards 0 or 1.
_ANIME_BAND = 0.5
_ANIME_GAIN = 3.0


@dataclass(frozen=True)
class Refinement:
    """Everything the trimap and the alpha refinement need, derived from one job's options."""

    erode_px: int
    foreground_threshold: int
    background_threshold: int
    radius_px: int
    eps: float
    edge_gain: float
    only_mask: bool
    # Width (px) of the sigmoid that turns a hard segmentation into a soft mask, so the two
    # thresholds select how far from the edge a pixel is "surely" fore- or background.
    softness_px: float = 2.0


def _or(value: int | None, default: int) -> int:
    return default if value is None else value


def refinement_for(options: RemoveBackgroundOptions) -> Refinement:
    """The refinement settings for one job; unset options take the API's defaults."""
    erode = _or(options.erode_size, DEFAULT_ERODE_SIZE)
    band_scale, extra, radius, eps = _HAIR[options.hair_optimization or "auto"]
    gain = 1.0
    if options.remove_type == "Anime":
        band_scale, radius, gain = band_scale * _ANIME_BAND, max(1, radius // 2), _ANIME_GAIN
    return Refinement(
        erode_px=round(erode * band_scale) + extra,
        foreground_threshold=_or(options.foreground_threshold, DEFAULT_FOREGROUND_THRESHOLD),
        background_threshold=_or(options.background_threshold, DEFAULT_BACKGROUND_THRESHOLD),
        radius_px=radius,
        eps=eps,
        edge_gain=gain,
        only_mask=bool(options.only_mask),
    )
