"""Alpha refinement with a colour guided filter (He, Sun and Tang), built from box filters.

The filter fits, in every (2r+1)^2 window, alpha as a linear function of the RGB colour; eps
sets how closely it follows image detail (small eps: fine edges such as hair). The same
coefficients, computed at the working resolution and upsampled, apply to the full-size image
(fast guided upsampling), so a large photo costs one pass of cheap per-pixel arithmetic.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

__all__ = ["GuidedCoefficients", "guided_coefficients"]


def _box(image: np.ndarray, radius: int) -> np.ndarray:
    size = 2 * radius + 1
    return cv2.boxFilter(image, -1, (size, size), borderType=cv2.BORDER_REFLECT)


@dataclass(frozen=True)
class GuidedCoefficients:
    """Per-pixel alpha = sum_c(a[..., c] * guide[..., c]) + b, guide in 0..1."""

    a: np.ndarray  # (h, w, 3) float32
    b: np.ndarray  # (h, w) float32

    def apply(self, guide: np.ndarray) -> np.ndarray:
        """Alpha for a guide of the coefficients' own size."""
        return np.einsum("hwc,hwc->hw", self.a, guide) + self.b

    def apply_upsampled(self, rgb: np.ndarray) -> np.ndarray:
        """Alpha for a larger uint8 RGB image: coefficients upsampled, one channel at a time
        so a 12-megapixel photo needs a few full-size float planes, not a dozen."""
        size = (rgb.shape[1], rgb.shape[0])
        alpha = np.asarray(cv2.resize(self.b, size, interpolation=cv2.INTER_LINEAR), np.float32)
        for channel in range(3):
            a = cv2.resize(np.ascontiguousarray(self.a[..., channel]), size)
            alpha += a * rgb[..., channel].astype(np.float32) * np.float32(1 / 255)
        return alpha


def guided_coefficients(
    guide: np.ndarray, source: np.ndarray, radius: int, eps: float
) -> GuidedCoefficients:
    """Coefficients of the colour guided filter of `source` (float 0..1) by `guide` (h, w, 3)."""
    mean_i = _box(guide, radius)
    mean_p = _box(source, radius)
    cov_ip = _box(guide * source[..., None], radius) - mean_i * mean_p[..., None]
    sigma = np.empty((*source.shape, 3, 3), np.float32)
    for i in range(3):
        for j in range(i, 3):
            cov = _box(guide[..., i] * guide[..., j], radius) - mean_i[..., i] * mean_i[..., j]
            sigma[..., i, j] = sigma[..., j, i] = cov
    sigma += np.eye(3, dtype=np.float32) * np.float32(eps)
    a = np.linalg.solve(sigma, cov_ip[..., None])[..., 0]
    b = mean_p - np.einsum("hwc,hwc->hw", a, mean_i)
    return GuidedCoefficients(a=_box(a.astype(np.float32), radius), b=_box(b, radius))
