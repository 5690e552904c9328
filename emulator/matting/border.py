"""Which parts of the image's border are sure background, for the border prior.

Photographers rarely cut their subject at the top edge, but portraits and close-ups often run
into the bottom and from there up the sides: a torso's shoulders, an astronaut's arm and the
helmet on her lap. The bottom strip is therefore never sure background, and each side is
walked up from its bottom end in stretches: a stretch whose colours are mostly those of the
image's centre (where the subject usually is) and not those of the background on the opposite
side is the subject touching the edge, not background; the walk stops at the first stretch
that is not. Up to half of each side can be taken for the subject this way.
"""

from __future__ import annotations

import itertools

import numpy as np

from emulator.matting.colours import edge_colour_distance

__all__ = ["centre_weight", "sure_background"]

Stretch = tuple[slice, slice]
_STRIP = 0.02  # of the shorter side: the width of the border strips
_SEGMENTS = 8  # stretches per side
_CENTRE = 0.75  # centre weight above which a pixel is a sample of the centre's colours
# RGB distance within which a pixel has one of the centre's colours (loose: a subject's own
# shading spans a range) or of the opposite side's background colours.
_CENTRE_MATCH = 40.0
_ACROSS_MATCH = 25.0
# A stretch is the subject's when at least this share of it has the centre's colours and less
# than _ACROSS_SHARE has the colours of the background across the image.
_CENTRE_SHARE = 0.5
_ACROSS_SHARE = 0.75
_MAX_RISING = _SEGMENTS // 2


def centre_weight(shape: tuple[int, int]) -> np.ndarray:
    """1 at the centre, falling to 0 at the ellipse that touches the image's sides."""
    ys, xs = np.mgrid[: shape[0], : shape[1]].astype(np.float32)
    ny, nx = (ys - shape[0] / 2) / (shape[0] / 2), (xs - shape[1] / 2) / (shape[1] / 2)
    return np.clip(1.0 - np.sqrt(nx * nx + ny * ny), 0.0, 1.0)


def _cuts(length: int) -> list[slice]:
    cuts = np.linspace(0, length, _SEGMENTS + 1).round().astype(int)
    return [slice(int(start), int(stop)) for start, stop in itertools.pairwise(cuts)]


def _stretches(shape: tuple[int, int], width: int) -> dict[str, list[Stretch]]:
    """(rows, columns) of each stretch of the left and right strips (top to bottom) and of the
    bottom strip (left to right)."""
    height, full = shape
    return {
        "l": [(along, slice(0, width)) for along in _cuts(height)],
        "r": [(along, slice(full - width, full)) for along in _cuts(height)],
        "b": [(slice(height - width, height), along) for along in _cuts(full)],
    }


def _shares(distance: np.ndarray, stretches: list[Stretch], margin: float) -> list[float]:
    """Per stretch, the share of its pixels within `margin` of the colours measured."""
    return [float((distance[rows, columns] < margin).mean()) for rows, columns in stretches]


def _rising_from_the_bottom(centre: list[float], across: list[float]) -> int:
    """How many stretches of a side, counted up from its bottom end, are the subject's."""
    count = 0
    for own, seen_across in zip(reversed(centre), reversed(across), strict=True):
        if own < _CENTRE_SHARE or seen_across >= _ACROSS_SHARE:
            break
        count += 1
    return min(count, _MAX_RISING)


def sure_background(rgb: np.ndarray) -> np.ndarray:
    """The border pixels taken for sure background (bool mask): the top strip, and the left
    and right strips above the stretches where the subject rises from the bottom edge."""
    shape = rgb.shape[:2]
    width = max(2, round(_STRIP * min(shape)))
    sides = _stretches(shape, width)
    to_centre = edge_colour_distance(rgb, centre_weight(shape) > _CENTRE)
    centre = {side: _shares(to_centre, sides[side], _CENTRE_MATCH) for side in sides}
    sure = np.zeros(shape, bool)
    sure[:width] = True
    for side, opposite in (("l", "r"), ("r", "l")):
        background = np.zeros(shape, bool)
        for share, (rows, columns) in zip(centre[opposite], sides[opposite], strict=True):
            background[rows, columns] = share < _CENTRE_SHARE
        across = [0.0] * _SEGMENTS
        if background.any():
            to_across = edge_colour_distance(rgb, background)
            across = _shares(to_across, sides[side], _ACROSS_MATCH)
        rising = _rising_from_the_bottom(centre[side], across)
        for rows, columns in sides[side][: _SEGMENTS - rising]:
            sure[rows, columns] = True
    sure[-width:] = False
    for share, (rows, columns) in zip(centre["b"], sides["b"], strict=True):
        sure[rows, columns] = share < _CENTRE_SHARE
    return sure
