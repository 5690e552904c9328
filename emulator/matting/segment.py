"""The classical segmenter: OpenCV GrabCut, seeded by the job's Box or by a border prior.

Without a Box the prior says: the border strips are background, except where the subject
runs into them (`border.sure_background`: the bottom strip where it has the centre's colours,
and the sides where the subject rises from the bottom up them); colours unlike the common
colours of the sure strips are probably the subject, and the centre leans towards subject.
When the image is a sharp subject on a blurred background (`focus.focus_prior`), sharpness
overrides colour: the sharp central region is probably the subject, even in an edge strip, and
the smooth rest probably background. GrabCut's colour models and graph cut then settle each
pixel; parts pushed to the margins are dropped.
"""

from __future__ import annotations

import contextlib

import cv2
import numpy as np

from emulator.matting.border import centre_weight, sure_background
from emulator.matting.colours import edge_colour_distance
from emulator.matting.focus import focus_prior

__all__ = ["grabcut_subject"]

Box = tuple[int, int, int, int]
_ITERATIONS = 3
_FOCUS_ITERATIONS = 1
_MIN_SIDE = 8  # px; smaller images are taken whole
# RGB distance from the nearest edge colour at which a pixel counts as probably subject.
_COLOUR_MARGIN = 25.0
_HOLE_SHARE = 0.25
_MARGIN_SHARE = 1 / 3


def _border_prior(rgb: np.ndarray) -> tuple[np.ndarray, int]:
    """GrabCut's initial mask without a Box, and how many iterations it needs."""
    shape = rgb.shape[:2]
    sure = sure_background(rgb)
    score = edge_colour_distance(rgb, sure) / _COLOUR_MARGIN + 0.5 * centre_weight(shape)
    mask = np.full(shape, cv2.GC_PR_BGD, np.uint8)
    mask[score > 1.0] = cv2.GC_PR_FGD
    if not (mask == cv2.GC_PR_FGD).any():  # nothing stands out: take the centre
        mask[centre_weight(shape) > 0.5] = cv2.GC_PR_FGD
    mask[sure] = cv2.GC_BGD
    focus = focus_prior(rgb)
    if focus is None:
        return mask, _ITERATIONS
    # A sharp subject on a blurred background: sharpness decides, also where the subject runs
    # into a "sure" edge strip. The colour models then agree with it after one iteration,
    # and each further one costs several times as much (the colours overlap, the cut is hard).
    mask[focus.smooth & (mask == cv2.GC_PR_FGD)] = cv2.GC_PR_BGD
    mask[focus.sharp] = cv2.GC_PR_FGD
    return mask, _FOCUS_ITERATIONS


def _box_prior(shape: tuple[int, int], box: Box) -> np.ndarray:
    mask = np.full(shape, cv2.GC_BGD, np.uint8)
    x1, y1, x2, y2 = box
    mask[y1:y2, x1:x2] = cv2.GC_PR_FGD
    return mask


def _is_subject(mask: np.ndarray) -> np.ndarray:
    return (mask == cv2.GC_FGD) | (mask == cv2.GC_PR_FGD)


def _run_grabcut(
    rgb: np.ndarray, mask: np.ndarray, box: Box | None, iterations: int
) -> np.ndarray:
    background, foreground = np.zeros((1, 65), np.float64), np.zeros((1, 65), np.float64)
    bgr = np.ascontiguousarray(rgb[..., ::-1])
    mode = cv2.GC_INIT_WITH_MASK if box is None else cv2.GC_INIT_WITH_RECT
    rect = (0, 0, 0, 0) if box is None else (box[0], box[1], box[2] - box[0], box[3] - box[1])
    # GrabCut refuses degenerate seeds (e.g. no background sample); the prior then stands.
    with contextlib.suppress(cv2.error):
        cv2.grabCut(bgr, mask, rect, background, foreground, iterations, mode)
    return _is_subject(mask)


def _drop_specks(binary: np.ndarray, centred: bool) -> np.ndarray:
    """Keep the connected parts at least a tenth of the largest one's area and, when the
    subject is taken to be `centred` (no Box), not pushed to the margins: a part's mean centre
    weight must reach a third of that of the part that weighs most at the centre (the glow of
    a horizon beside a rocket goes, the rocket stays)."""
    count, labels, stats, _ = cv2.connectedComponentsWithStats(
        binary.astype(np.uint8), connectivity=8
    )
    if count <= 2:
        return binary
    areas = stats[1:, cv2.CC_STAT_AREA]
    weights = np.bincount(labels.ravel(), centre_weight(binary.shape).ravel(), count)[1:]
    central = weights / areas
    heaviest = int(np.argmax(weights))
    keep = areas >= 0.1 * areas.max()
    if centred:
        keep &= central >= _MARGIN_SHARE * central[heaviest]
    keep[heaviest] = True
    return np.isin(labels, np.flatnonzero(keep) + 1)


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
    prior, iterations = _border_prior(rgb) if box is None else (_box_prior(shape, box), _ITERATIONS)
    guess = _is_subject(prior)
    cut = _run_grabcut(rgb, prior, box, iterations)
    subject = _fill_holes(_drop_specks(cut, box is None))
    return subject if subject.any() else guess
