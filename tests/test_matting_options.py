"""Each RemoveBackground option moves the matting engine's output in the expected direction."""

from __future__ import annotations

import io
from typing import Any

import numpy as np
import pytest
from PIL import Image

from emulator.matting import cutout_alpha, render
from emulator.matting.synthetic import Scene, make_scene
from picpik.models import RemoveBackgroundOptions, parse_options


@pytest.fixture(scope="module")
def scene() -> Scene:
    return make_scene(5, width=240, height=180)


def alpha_of(scene: Scene, **options: Any) -> np.ndarray:
    """The alpha under options given by their API names, as a job gives them."""
    return cutout_alpha(scene.rgb, parse_options(options))


def soft_pixels(alpha: np.ndarray) -> int:
    """Pixels of the blurred edge band: neither fully transparent nor fully opaque."""
    return int(((alpha > 0) & (alpha < 255)).sum())


def test_a_larger_erode_size_widens_the_soft_edge_band(scene: Scene) -> None:
    bands = [soft_pixels(alpha_of(scene, ErodeSize=size)) for size in (0, 10, 25, 40)]
    assert bands == sorted(bands)
    assert bands[-1] > 2 * bands[0]


def test_only_mask_returns_a_single_channel_mask_of_the_inputs_size(scene: Scene) -> None:
    buffer = io.BytesIO()
    Image.fromarray(scene.rgb).save(buffer, "JPEG")
    only_mask = RemoveBackgroundOptions(only_mask=True)
    mask = Image.open(io.BytesIO(render(buffer.getvalue(), only_mask)))
    cutout = Image.open(io.BytesIO(render(buffer.getvalue(), RemoveBackgroundOptions())))
    assert mask.mode == "L"
    assert mask.size == (scene.rgb.shape[1], scene.rgb.shape[0])
    assert np.array_equal(np.asarray(mask), np.asarray(cutout)[..., 3])


def test_a_higher_foreground_threshold_leaves_fewer_pixels_surely_opaque(scene: Scene) -> None:
    strict = alpha_of(scene, ForegroundThreshold=254)
    lenient = alpha_of(scene, ForegroundThreshold=100)
    assert (strict == 255).sum() < (lenient == 255).sum()
    assert soft_pixels(strict) > soft_pixels(lenient)


def test_a_lower_background_threshold_leaves_fewer_pixels_surely_transparent(scene: Scene) -> None:
    strict = alpha_of(scene, BackgroundThreshold=1)
    lenient = alpha_of(scene, BackgroundThreshold=150)
    assert (strict == 0).sum() < (lenient == 0).sum()
    assert soft_pixels(strict) > soft_pixels(lenient)


def test_hair_optimization_on_keeps_a_wider_softer_edge_than_off(scene: Scene) -> None:
    on, auto, off = (alpha_of(scene, HairOptimization=mode) for mode in ("on", "auto", "off"))
    assert soft_pixels(on) > soft_pixels(auto) > soft_pixels(off)


def test_anime_gives_harder_edges_than_general(scene: Scene) -> None:
    general, anime = alpha_of(scene, RemoveType="General"), alpha_of(scene, RemoveType="Anime")
    assert soft_pixels(anime) < soft_pixels(general) / 2
    # Same subject, only the edge differs.
    assert ((anime > 127) != (general > 127)).mean() < 0.01


def test_box_restricts_the_foreground_to_the_box(scene: Scene) -> None:
    x1, y1, x2, y2 = scene.box(margin=4)
    half = (x1, y1, (x1 + x2) // 2, y2)  # the subject's left half only
    alpha = alpha_of(scene, Box=half)
    outside = np.ones(alpha.shape, bool)
    outside[half[1] : half[3], half[0] : half[2]] = False
    assert alpha[outside].max() == 0
    inside_part = scene.truth & ~outside
    cut = alpha > 127
    assert (cut & inside_part).sum() / (cut | inside_part).sum() > 0.8
