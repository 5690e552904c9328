"""How far each pixel's colour lies from every colour seen on the image's edges.

The edge colours are binned in an RGB grid (8 levels a bin); the distance from every bin to the
nearest bin the edges fill is an exact Euclidean distance transform of that small 32^3 grid,
so smooth backgrounds (a sky's gradient) count as background all along their range, which a
handful of cluster centres would not.
"""

from __future__ import annotations

import cv2
import numpy as np

__all__ = ["edge_colour_distance"]

_STEP = 8  # RGB levels per bin
_BINS = 256 // _STEP
# A colour bin holding less than this share of the edge pixels is more likely a subject
# touching the edge (or a speck) than the background: it does not count as a background colour.
_RARE_SHARE = 0.003


def _distance_transform_3d(filled: np.ndarray) -> np.ndarray:
    """Euclidean distance (in bins) from every bin to the nearest filled bin; separable and
    exact: along each axis in turn, min over k of d2[k] + (x - k)^2."""
    squared = np.where(filled, 0.0, np.inf).astype(np.float32)
    index = np.arange(filled.shape[0], dtype=np.float32)
    cost = (index[:, None] - index[None, :]) ** 2
    for axis in range(3):
        along = np.moveaxis(squared, axis, -1)
        nearest = np.min(along[..., None, :] + cost, axis=-1)
        squared = np.moveaxis(nearest, -1, axis)
    return np.sqrt(squared)


def edge_colour_distance(rgb: np.ndarray, edges: np.ndarray) -> np.ndarray:
    """Per pixel of a uint8 RGB image, the RGB distance of its (slightly smoothed) colour to
    the nearest common colour among the pixels selected by the bool mask `edges`."""
    smooth = cv2.GaussianBlur(rgb, (0, 0), 1.5)
    bins = (smooth // _STEP).astype(np.intp)
    samples = bins[edges]
    counts = np.zeros((_BINS,) * 3, np.int32)
    np.add.at(counts, (samples[:, 0], samples[:, 1], samples[:, 2]), 1)
    common = counts >= max(2.0, _RARE_SHARE * len(samples))
    if not common.any():
        common = counts > 0
    distance = _distance_transform_3d(common) * _STEP
    return distance[bins[..., 0], bins[..., 1], bins[..., 2]]
