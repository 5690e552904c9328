"""Synthetic photos with a known subject mask: the ground truth for tests, benches and demos.

Each scene is a subject (ellipse, rounded rectangle, star polygon or blob) with its own shading
and texture, drawn on a textured background (noise, stripes, gradient, checkers or blotches),
then softened and noised a little like a camera would. Scenes are deterministic per index.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import cv2
import numpy as np

__all__ = ["Scene", "make_close_up", "make_portrait", "make_scene"]

Rng = np.random.Generator
FloatImage = np.ndarray


@dataclass(frozen=True)
class Scene:
    """An RGB uint8 image, its subject's true mask (bool) and a readable name."""

    rgb: np.ndarray
    truth: np.ndarray
    name: str

    def box(self, margin: int = 8) -> tuple[int, int, int, int]:
        """The subject's bounding box (x1, y1, x2, y2, exclusive ends) grown by `margin`."""
        ys, xs = np.nonzero(self.truth)
        height, width = self.truth.shape
        return (
            max(0, int(xs.min()) - margin),
            max(0, int(ys.min()) - margin),
            min(width, int(xs.max()) + 1 + margin),
            min(height, int(ys.max()) + 1 + margin),
        )


def _colour(rng: Rng) -> np.ndarray:
    return rng.uniform(20, 235, size=3).astype(np.float32)


def _colour_apart(rng: Rng, others: list[np.ndarray], low: float, high: float) -> np.ndarray:
    """A colour between `low` and `high` RGB distance from the nearest of `others`:
    distinct, but not trivially so."""
    for _ in range(500):
        candidate = _colour(rng)
        nearest = min(float(np.linalg.norm(candidate - other)) for other in others)
        if low <= nearest <= high:
            return candidate
    return candidate


def _mix(weight: FloatImage, first: np.ndarray, second: np.ndarray) -> FloatImage:
    return first + weight[..., None] * (second - first)


def _noise_bg(shape: tuple[int, int], rng: Rng, c1: np.ndarray, _c2: np.ndarray) -> FloatImage:
    return c1 + rng.normal(0, 22, size=(*shape, 3)).astype(np.float32)


def _stripes_bg(shape: tuple[int, int], rng: Rng, c1: np.ndarray, c2: np.ndarray) -> FloatImage:
    ys, xs = np.mgrid[: shape[0], : shape[1]].astype(np.float32)
    angle = rng.uniform(0, np.pi)
    period = rng.uniform(12, 30)
    phase = (xs * np.cos(angle) + ys * np.sin(angle)) / period
    return _mix((np.floor(phase) % 2).astype(np.float32), c1, c2)


def _gradient_bg(shape: tuple[int, int], rng: Rng, c1: np.ndarray, c2: np.ndarray) -> FloatImage:
    ys, xs = np.mgrid[: shape[0], : shape[1]].astype(np.float32)
    angle = rng.uniform(0, 2 * np.pi)
    ramp = xs * np.cos(angle) + ys * np.sin(angle)
    ramp = (ramp - ramp.min()) / max(float(np.ptp(ramp)), 1.0)
    return _mix(ramp, c1, c2)


def _checkers_bg(shape: tuple[int, int], rng: Rng, c1: np.ndarray, c2: np.ndarray) -> FloatImage:
    ys, xs = np.mgrid[: shape[0], : shape[1]]
    cell = int(rng.integers(10, 25))
    return _mix((((xs // cell) + (ys // cell)) % 2).astype(np.float32), c1, c2)


def _blotches_bg(shape: tuple[int, int], rng: Rng, c1: np.ndarray, c2: np.ndarray) -> FloatImage:
    coarse = rng.uniform(0, 1, size=(6, 8)).astype(np.float32)
    weight = cv2.resize(coarse, (shape[1], shape[0]), interpolation=cv2.INTER_CUBIC)
    return _mix(np.clip(weight, 0, 1), c1, c2)


def _ellipse(shape: tuple[int, int], rng: Rng, centre: tuple[int, int]) -> np.ndarray:
    mask = np.zeros(shape, np.uint8)
    axes = (int(shape[1] * rng.uniform(0.16, 0.28)), int(shape[0] * rng.uniform(0.2, 0.32)))
    cv2.ellipse(mask, centre, axes, float(rng.uniform(0, 180)), 0, 360, 1, -1)
    return mask


def _rounded_rect(shape: tuple[int, int], rng: Rng, centre: tuple[int, int]) -> np.ndarray:
    mask = np.zeros(shape, np.uint8)
    half_w, half_h = int(shape[1] * rng.uniform(0.14, 0.24)), int(shape[0] * rng.uniform(0.18, 0.3))
    radius = int(min(half_w, half_h) * rng.uniform(0.2, 0.5))
    x, y = centre
    cv2.rectangle(mask, (x - half_w + radius, y - half_h + radius),
                  (x + half_w - radius, y + half_h - radius), 1, -1)
    kernel = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * radius + 1, 2 * radius + 1))
    return cv2.dilate(mask, kernel)


def _star(shape: tuple[int, int], rng: Rng, centre: tuple[int, int]) -> np.ndarray:
    mask = np.zeros(shape, np.uint8)
    count = int(rng.integers(7, 12))
    angles = np.sort(rng.uniform(0, 2 * np.pi, count))
    reach = min(shape) * 0.32
    radii = reach * rng.uniform(0.55, 1.0, count)
    points = np.stack([centre[0] + radii * np.cos(angles), centre[1] + radii * np.sin(angles)], 1)
    cv2.fillPoly(mask, [points.astype(np.int32)], 1)
    return mask


def _blob(shape: tuple[int, int], rng: Rng, centre: tuple[int, int]) -> np.ndarray:
    mask = np.zeros(shape, np.uint8)
    reach = min(shape) * 0.14
    for _ in range(int(rng.integers(3, 6))):
        offset = rng.normal(0, reach * 0.6, 2)
        point = (int(centre[0] + offset[0]), int(centre[1] + offset[1]))
        cv2.circle(mask, point, int(reach * rng.uniform(0.7, 1.3)), 1, -1)
    return mask


BackgroundFn = Callable[[tuple[int, int], Rng, np.ndarray, np.ndarray], FloatImage]
ShapeFn = Callable[[tuple[int, int], Rng, tuple[int, int]], np.ndarray]
BACKGROUNDS: dict[str, BackgroundFn] = {
    "noise": _noise_bg,
    "stripes": _stripes_bg,
    "gradient": _gradient_bg,
    "checkers": _checkers_bg,
    "blotches": _blotches_bg,
}
SHAPES: dict[str, ShapeFn] = {
    "ellipse": _ellipse,
    "rounded-rect": _rounded_rect,
    "star": _star,
    "blob": _blob,
}


def _subject_fill(shape: tuple[int, int], rng: Rng, colour: np.ndarray) -> FloatImage:
    """The subject's own look: a soft shading ramp and fine texture, like a lit object."""
    shading = _gradient_bg(shape, rng, colour * 0.85, np.minimum(colour * 1.15, 255))
    return shading + rng.normal(0, 7, size=(*shape, 3)).astype(np.float32)


def make_scene(index: int, width: int = 320, height: int = 240, *, hard: bool = False) -> Scene:
    """Scene number `index`: background kind and subject shape cycle, colours are seeded.
    `hard` scenes put the subject's colour closer to the background's (RGB distance 25-45
    instead of 45-90), where a colour-based segmenter starts to fail."""
    rng = np.random.default_rng(1000 + index)
    shape = (height, width)
    bg_name = list(BACKGROUNDS)[index % len(BACKGROUNDS)]
    shape_name = list(SHAPES)[index % len(SHAPES)]
    c1 = _colour(rng)
    c2 = _colour_apart(rng, [c1], 40, 120)
    subject = _colour_apart(rng, [c1, c2], *((25, 45) if hard else (45, 90)))
    background = BACKGROUNDS[bg_name](shape, rng, c1, c2)
    centre = (int(width * rng.uniform(0.4, 0.6)), int(height * rng.uniform(0.4, 0.6)))
    truth = SHAPES[shape_name](shape, rng, centre).astype(bool)
    image = np.where(truth[..., None], _subject_fill(shape, rng, subject), background)
    # A camera's softness and sensor noise, so edges are not perfect steps.
    image = cv2.GaussianBlur(image, (0, 0), 0.7) + rng.normal(0, 3, size=(*shape, 3))
    rgb = np.clip(image, 0, 255).astype(np.uint8)
    name = f"{index:02d}-{shape_name}-on-{bg_name}" + ("-hard" if hard else "")
    return Scene(rgb=rgb, truth=truth, name=name)


def make_portrait(index: int, width: int = 320, height: int = 240) -> Scene:
    """A head-and-shoulders portrait cut by the frame: the shoulders fill the bottom edge and
    run into the left and right edges, the head rises into the background. The subject
    touches three edges, where a prior "the edges are background" goes wrong."""
    rng = np.random.default_rng(2000 + index)
    shape = (height, width)
    c1 = _colour(rng)
    c2 = _colour_apart(rng, [c1], 40, 120)
    subject = _colour_apart(rng, [c1, c2], 45, 90)
    bg_name = list(BACKGROUNDS)[index % len(BACKGROUNDS)]
    background = BACKGROUNDS[bg_name](shape, rng, c1, c2)
    mask = np.zeros(shape, np.uint8)
    shoulders = int(height * rng.uniform(0.55, 0.65))
    cv2.ellipse(mask, (width // 2, height + height // 6), (int(width * 0.62), height // 2 + 20),
                0, 0, 360, 1, -1)
    mask[shoulders + height // 5 :] = 1
    cv2.ellipse(mask, (width // 2, int(height * 0.38)), (int(width * 0.14), int(height * 0.22)),
                0, 0, 360, 1, -1)
    truth = mask.astype(bool)
    image = np.where(truth[..., None], _subject_fill(shape, rng, subject), background)
    image = cv2.GaussianBlur(image, (0, 0), 0.7) + rng.normal(0, 3, size=(*shape, 3))
    rgb = np.clip(image, 0, 255).astype(np.uint8)
    return Scene(rgb=rgb, truth=truth, name=f"portrait-{index:02d}-on-{bg_name}")


def make_close_up(index: int, width: int = 320, height: int = 240) -> Scene:
    """A close-up with a shallow depth of field: a sharp, finely striped subject (a face's fur)
    fills the centre and runs into the top and bottom edges, on an out-of-focus background
    blotched with the very colours of its stripes. Colour tells them apart nowhere; only
    sharpness does."""
    rng = np.random.default_rng(3000 + index)
    shape = (height, width)
    c1 = _colour(rng)
    c2 = _colour_apart(rng, [c1], 40, 80)
    background = cv2.GaussianBlur(_blotches_bg(shape, rng, c1, c2), (0, 0), 6)
    mask = np.zeros(shape, np.uint8)
    centre = (int(width * rng.uniform(0.45, 0.55)), height // 2)
    axes = (int(width * rng.uniform(0.24, 0.3)), int(height * 0.62))
    cv2.ellipse(mask, centre, axes, 0, 0, 360, 1, -1)
    truth = mask.astype(bool)
    ys, xs = np.mgrid[:height, :width].astype(np.float32)
    stripes = 0.5 + 0.5 * np.sin(xs * rng.uniform(0.8, 1.2) + 3 * np.sin(ys / 9))
    fill = _mix(stripes, c1, c2) + rng.normal(0, 6, size=(*shape, 3)).astype(np.float32)
    image = np.where(truth[..., None], fill, background)
    image = cv2.GaussianBlur(image, (0, 0), 0.7) + rng.normal(0, 1.5, size=(*shape, 3))
    rgb = np.clip(image, 0, 255).astype(np.uint8)
    return Scene(rgb=rgb, truth=truth, name=f"close-up-{index:02d}")
