"""The classical segmenter: OpenCV GrabCut, seeded by the job's Box or by a border prior.

Without a Box the prior says: the top, left and right edges of the image are background
(photographers rarely cut their subject there; the bottom edge is only probably background,
since portraits and objects on tables often rise from it), colours unlike the common colours
of those edges are probably the subject, and the centre leans towards subject. GrabCut's colour
models and graph cut then settle each pixel.
"""

from __future__ import annotations

import contextlib

import cv2
import numpy as np

from emulator.matting.colours import edge_colour_distance

__all__ = ["grabcut_subject"]

Box = tuple[int, int, int, int]
_ITERATIONS = 3
_MIN_SIDE = 8  # px; smaller images are taken whole
# RGB distance from the nearest edge colour at which a pixel counts as probably subject.
_COLOUR_MARGIN = 25.0
_HOLE_SHARE = 0.25


def _sure_background(shape: tuple[int, int]) -> np.ndarray:
    """The top, left and right edge strips, down to the bottom strip (left undecided)."""
    width = max(2, round(0.02 * min(shape)))
    sure = np.zeros(shape, bool)
    sure[:width] = True
    sure[:-width, :width] = sure[:-width, -width:] = True
    return sure


def _centre_weight(shape: tuple[int, int]) -> np.ndarray:
    """1 at the centre, falling to 0 at the ellipse that touches the image's sides."""
    ys, xs = np.mgrid[: shape[0], : shape[1]].astype(np.float32)
    ny, nx = (ys - shape[0] / 2) / (shape[0] / 2), (xs - shape[1] / 2) / (shape[1] / 2)
    return np.clip(1.0 - np.sqrt(nx * nx + ny * ny), 0.0, 1.0)


def _border_prior(rgb: np.ndarray) -> np.ndarray:
    shape = rgb.shape[:2]
    sure = _sure_background(shape)
    score = edge_colour_distance(rgb, sure) / _COLOUR_MARGIN + 0.5 * _centre_weight(shape)
    mask = np.full(shape, cv2.GC_PR_BGD, np.uint8)
    mask[score > 1.0] = cv2.GC_PR_FGD
    if not (mask == cv2.GC_PR_FGD).any():  # nothing stands out: take the centre
        mask[_centre_weight(shape) > 0.5] = cv2.GC_PR_FGD
    mask[sure] = cv2.GC_BGD
    return mask


def _box_prior(shape: tuple[int, int], box: Box) -> np.ndarray:
    mask = np.full(shape, cv2.GC_BGD, np.uint8)
    x1, y1, x2, y2 = box
    mask[y1:y2, x1:x2] = cv2.GC_PR_FGD
    return mask


def _is_subject(mask: np.ndarray) -> np.ndarray:
    return (mask == cv2.GC_FGD) | (mask == cv2.GC_PR_FGD)


def _run_grabcut(rgb: np.ndarray, mask: np.ndarray, box: Box | None) -> np.ndarray:
    background, foreground = np.zeros((1, 65), np.float64), np.zeros((1, 65), np.float64)
    bgr = np.ascontiguousarray(rgb[..., ::-1])
    mode = cv2.GC_INIT_WITH_MASK if box is None else cv2.GC_INIT_WITH_RECT
    rect = (0, 0, 0, 0) if box is None else (box[0], box[1], box[2] - box[0], box[3] - box[1])
    # GrabCut refuses degenerate seeds (e.g. no background sample); the prior then stands.
    with contextlib.suppress(cv2.error):
        cv2.grabCut(bgr, mask, rect, background, foreground, _ITERATIONS, mode)
    return _is_subject(mask)


def _drop_specks(binary: np.ndarray) -> np.ndarray:
    """Keep the connected parts at least a tenth of the largest one's area."""
    count, labels, stats, _ = cv2.connectedComponentsWithStats(
        binary.astype(np.uint8), connectivity=8
    )
    if count <= 2:
        return binary
    areas = stats[1:, cv2.CC_STAT_AREA]
    keep = np.flatnonzero(areas >= 0.1 * areas.max()) + 1
    return np.isin(labels, keep)


def _fill_holes(binary: np.ndarray) -> np.ndarray:
    """Fill enclosed background (not touching the image's edge) smaller than _HOLE_SHARE of
    the subject: a highlight or a shadow inside an object, far more often than a real hole."""
    _, labels, stats, _ = cv2.connectedComponentsWithStats(
        (~binary).astype(np.uint8), connectivity=4
    )
    x, y = stats[:, cv2.CC_STAT_LEFT], stats[:, cv2.CC_STAT_TOP]
    right = x + stats[:, cv2.CC_STAT_WIDTH]
    bottom = y + stats[:, cv2.CC_STAT_HEIGHT]
    height, width = binary.shape
    enclosed = (x > 0) & (y > 0) & (right < width) & (bottom < height)
    small = stats[:, cv2.CC_STAT_AREA] <= _HOLE_SHARE * binary.sum()
    fill = enclosed & small
    fill[0] = False  # label 0 is the subject itself
    return binary | fill[labels]


def grabcut_subject(rgb: np.ndarray, box: Box | None) -> np.ndarray:
    """A bool mask of the subject of a (working-size) RGB image. When the colours settle
    nothing (a featureless image), the prior's own guess stands: the centre, or the Box."""
    shape = rgb.shape[:2]
    if min(shape) < _MIN_SIDE:  # too small to hold a border and a subject: all subject
        return np.ones(shape, bool) if box is None else _is_subject(_box_prior(shape, box))
    # GrabCut's k-means draws from OpenCV's per-thread RNG: seed it so a cutout is repeatable.
    cv2.setRNGSeed(0x5EED)
    prior = _border_prior(rgb) if box is None else _box_prior(shape, box)
    guess = _is_subject(prior)
    subject = _fill_holes(_drop_specks(_run_grabcut(rgb, prior, box)))
    return subject if subject.any() else guess
