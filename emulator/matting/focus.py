"""A focus prior: the sharp subject of a photo taken with a shallow depth of field.

A close-up whose subject fills the frame (a cat's face against a blurred room) can share its
colours with the out-of-focus background and run into the top edge, where the border prior
takes everything for background. What tells them apart is sharpness: local high-frequency
energy (the absolute Laplacian, smoothed over a window) is high on the subject and low on the
blurred background. The cue is trusted only when the image shows a clear focus contrast: a
good share of the frame is very smooth while the centre is almost all sharp. Textured or noisy
backgrounds (no smooth share) and scenes whose sharp detail lies off-centre (a rocket's towers
against a clear sky) leave the prior as it was.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from emulator.matting.border import centre_weight

__all__ = ["FocusPrior", "focus_energy", "focus_prior"]

# Smoothing window of the energy, as a share of the image's shorter side (px at least).
_WINDOW = 0.02
_MIN_WINDOW = 2.0
_DENOISE = 1.0  # px
# The energy is normalised by its 95th percentile; below _SMOOTH a pixel is out of focus,
# above _SHARP in focus.
_NORMALISER = 95
_SMOOTH = 0.15
_SHARP = 0.3
# The focus contrast the cue needs: at least this share of the frame smooth, and at least this
# share of the centre (centre weight above _CENTRE) clearly sharp.
_SMOOTH_SHARE = 0.15
_CENTRE = 0.5
_CENTRE_SHARP = 0.35
_CENTRE_SHARP_SHARE = 0.8


@dataclass(frozen=True)
class FocusPrior:
    """Where a photo with a clear focus contrast is sharp (its subject) and smooth (bool)."""

    sharp: np.ndarray
    smooth: np.ndarray


def focus_energy(rgb: np.ndarray) -> np.ndarray:
    """Per pixel, the local high-frequency energy of an RGB image, normalised so that its 95th
    percentile is 1 (float32)."""
    # Every channel: a subject's texture can differ in hue more than in brightness.
    # Pixel noise is not focus: a slight blur first, which fine in-focus detail survives.
    denoised = cv2.GaussianBlur(rgb.astype(np.float32), (0, 0), _DENOISE)
    laplacian = np.abs(cv2.Laplacian(denoised, cv2.CV_32F, ksize=3)).sum(axis=2)
    sigma = max(_MIN_WINDOW, _WINDOW * min(rgb.shape[:2]))
    energy = cv2.GaussianBlur(laplacian, (0, 0), sigma)
    scale = float(np.percentile(energy, _NORMALISER))
    return energy / np.float32(max(scale, 1e-6))


def _sharp_centre(energy: np.ndarray, centre: np.ndarray) -> np.ndarray:
    """The sharp connected parts that reach into the centre."""
    count, labels = cv2.connectedComponents((energy > _SHARP).astype(np.uint8), connectivity=8)
    central = np.unique(labels[centre & (labels > 0)])
    if count <= 1 or central.size == 0:
        return np.zeros(energy.shape, bool)
    return np.isin(labels, central)


def focus_prior(rgb: np.ndarray) -> FocusPrior | None:
    """The sharp central subject and the smooth background of an RGB image, or None when the
    image shows no clear focus contrast."""
    energy = focus_energy(rgb)
    smooth = energy < _SMOOTH
    centre = centre_weight(rgb.shape[:2]) > _CENTRE
    if smooth.mean() < _SMOOTH_SHARE or not centre.any():
        return None
    if (energy[centre] > _CENTRE_SHARP).mean() < _CENTRE_SHARP_SHARE:
        return None
    sharp = _sharp_centre(energy, centre)
    return FocusPrior(sharp=sharp, smooth=smooth & ~sharp)
