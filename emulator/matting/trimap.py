"""From a segmentation to a trimap and a first alpha guess, the way rembg's alpha matting does.

rembg (danielgatis/rembg, `bg.py`, `alpha_matting_cutout`): a pixel is surely foreground when
the mask is above ForegroundThreshold, surely background when below BackgroundThreshold; both
regions are eroded by an ErodeSize x ErodeSize square and the rest is the unknown band.
One deliberate difference: ErodeSize 0 erodes nothing (rembg falls back to a 3x3 cross).
"""

from __future__ import annotations

import cv2
import numpy as np

__all__ = ["BACKGROUND", "FOREGROUND", "UNKNOWN", "build_trimap", "edge_ramp", "soft_mask"]

FOREGROUND, BACKGROUND, UNKNOWN = 255, 0, 128
_STEEPNESS = 8.0  # of the S-curve across the unknown band


def _distance_to(region: np.ndarray) -> np.ndarray:
    """Euclidean distance (px) of every pixel to the nearest pixel of `region`."""
    return cv2.distanceTransform((~region).astype(np.uint8), cv2.DIST_L2, 3)


def soft_mask(binary: np.ndarray, softness_px: float) -> np.ndarray:
    """A uint8 mask that is 255 deep inside `binary`, 0 far outside and a sigmoid of the signed
    distance to the edge in between, so thresholds pick a distance from the edge."""
    if binary.all() or not binary.any():
        return np.where(binary, 255, 0).astype(np.uint8)
    signed = (_distance_to(~binary) - 0.5) - (_distance_to(binary) - 0.5)
    steps = np.clip(signed / max(softness_px, 1e-3), -30.0, 30.0)
    sigmoid = 1.0 / (1.0 + np.exp(-steps))
    return np.rint(sigmoid * 255).astype(np.uint8)


def _erode(region: np.ndarray, size: int, border: int) -> np.ndarray:
    if size <= 1:
        return region
    kernel = np.ones((size, size), np.uint8)
    eroded = cv2.erode(
        region.astype(np.uint8), kernel, borderType=cv2.BORDER_CONSTANT, borderValue=border
    )
    return eroded.astype(bool)


def build_trimap(
    mask: np.ndarray, foreground_threshold: int, background_threshold: int, erode_size: int
) -> np.ndarray:
    """The trimap (255 foreground, 0 background, 128 unknown) of a uint8 soft mask."""
    # Outside the image counts as background (rembg's border values: 0 for fore-, 1 for back-).
    is_foreground = _erode(mask > foreground_threshold, erode_size, border=0)
    is_background = _erode(mask < background_threshold, erode_size, border=1)
    trimap = np.full(mask.shape, UNKNOWN, np.uint8)
    trimap[is_foreground] = FOREGROUND
    trimap[is_background] = BACKGROUND
    return trimap


def _s_curve(ramp: np.ndarray) -> np.ndarray:
    """0 -> 0, 0.5 -> 0.5, 1 -> 1, steep in the middle: the change concentrates at the band's
    centre line (the segmentation's edge) and tapers towards the band's sides, with no halo
    step, while every pixel of the band stays strictly between 0 and 1."""
    low, high = 1 / (1 + np.exp(_STEEPNESS / 2)), 1 / (1 + np.exp(-_STEEPNESS / 2))
    curve = 1 / (1 + np.exp(-_STEEPNESS * (ramp - 0.5)))
    return (curve - low) / (high - low)


def edge_ramp(trimap: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """A float alpha guess in 0..1: 1 in the foreground, 0 in the background and, across the
    unknown band, an S-curve of the relative distance to the two (ErodeSize's "blurred pixels
    at the edge")."""
    foreground, background = trimap == FOREGROUND, trimap == BACKGROUND
    if not foreground.any() or not background.any():
        guess = mask.astype(np.float32) / 255.0
    else:
        to_fg, to_bg = _distance_to(foreground), _distance_to(background)
        guess = _s_curve(to_bg / np.maximum(to_bg + to_fg, 1e-6))
    guess[foreground] = 1.0
    guess[background] = 0.0
    return guess.astype(np.float32)
