"""The classical matting engine: accuracy on synthetic scenes with a known subject mask."""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image

from emulator.matting import WORKING_SIDE, cutout_alpha, render
from emulator.matting.colours import edge_colour_distance
from emulator.matting.focus import focus_prior
from emulator.matting.synthetic import Scene, make_close_up, make_portrait, make_scene
from picpik.errors import InvalidInput
from picpik.models import RemoveBackgroundOptions

SCENES = 12


def iou(alpha: np.ndarray, truth: np.ndarray) -> float:
    """Intersection over union of the cutout (alpha > 127) and the true subject."""
    cut = alpha > 127
    return float((cut & truth).sum() / max((cut | truth).sum(), 1))


def png_of(rgb: np.ndarray, mode: str = "RGB") -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(rgb).convert(mode).save(buffer, "PNG")
    return buffer.getvalue()


@pytest.fixture(scope="module")
def scenes() -> list[Scene]:
    return [make_scene(index) for index in range(SCENES)]


def test_the_scenes_are_varied_and_have_a_subject(scenes: list[Scene]) -> None:
    names = {scene.name for scene in scenes}
    assert len(names) == SCENES
    assert len({name.split("-on-")[1] for name in names}) == 5  # every background kind
    for scene in scenes:
        assert 0.03 < scene.truth.mean() < 0.5, scene.name


def test_classical_engine_finds_the_subject_without_a_box(scenes: list[Scene]) -> None:
    scores = [iou(cutout_alpha(s.rgb, RemoveBackgroundOptions()), s.truth) for s in scenes]
    print(f"\nmatting IoU without Box: mean {np.mean(scores):.3f}, min {min(scores):.3f}")
    for scene, score in zip(scenes, scores, strict=True):
        print(f"  {scene.name}: {score:.3f}")
    assert np.mean(scores) >= 0.85


def test_classical_engine_with_the_subjects_box_is_more_precise(scenes: list[Scene]) -> None:
    scores = [
        iou(cutout_alpha(s.rgb, RemoveBackgroundOptions(box=s.box(margin=10))), s.truth)
        for s in scenes
    ]
    print(f"\nmatting IoU with Box: mean {np.mean(scores):.3f}, min {min(scores):.3f}")
    assert np.mean(scores) >= 0.9


def test_subjects_close_in_colour_to_the_background_are_still_found() -> None:
    hard = [make_scene(index, hard=True) for index in range(SCENES)]
    plain = [iou(cutout_alpha(s.rgb, RemoveBackgroundOptions()), s.truth) for s in hard]
    boxed = [
        iou(cutout_alpha(s.rgb, RemoveBackgroundOptions(box=s.box(margin=10))), s.truth)
        for s in hard
    ]
    print(f"\nmatting IoU, hard scenes: mean {np.mean(plain):.3f} without Box, "
          f"{np.mean(boxed):.3f} with Box (min {min(plain):.3f}, {min(boxed):.3f})")
    assert np.mean(plain) >= 0.85
    assert np.mean(boxed) >= 0.9


def test_a_portrait_cut_by_the_bottom_and_side_edges_is_kept_whole() -> None:
    # Head and shoulders: the subject fills the bottom edge and runs up both sides, 44 % of
    # the frame. Taking the sides for background lost it (IoU 0.00-0.76, mean 0.19).
    portraits = [make_portrait(index) for index in range(5)]
    scores = [iou(cutout_alpha(s.rgb, RemoveBackgroundOptions()), s.truth) for s in portraits]
    print(f"\nmatting IoU, portraits: mean {np.mean(scores):.3f}, min {min(scores):.3f}")
    for scene, score in zip(portraits, scores, strict=True):
        assert scene.truth[-1].all() and scene.truth[-1, 0] and not scene.truth[0].any()
        assert score >= 0.85, scene.name


def test_a_sharp_subject_on_a_blurred_background_of_its_colours_is_kept_to_the_top_edge() -> None:
    # A close-up with a shallow depth of field, like Chelsea the cat: the subject runs into
    # the top edge and its stripes have the very colours of the out-of-focus background.
    # Colour alone kept a blob at the centre (IoU 0.38-0.45); the focus prior finds it.
    close_ups = [make_close_up(index) for index in range(3)]
    scores = [iou(cutout_alpha(s.rgb, RemoveBackgroundOptions()), s.truth) for s in close_ups]
    print(f"\nmatting IoU, sharp close-ups: mean {np.mean(scores):.3f}, min {min(scores):.3f}")
    for scene, score in zip(close_ups, scores, strict=True):
        assert scene.truth[0].any() and scene.truth[-1].any()
        assert score >= 0.85, scene.name


def test_the_focus_prior_stays_out_of_scenes_with_textured_backgrounds() -> None:
    # Noise, stripes, checkers: no smooth share of the frame, so sharpness says nothing.
    textured = [make_scene(index) for index in range(5)] + [make_portrait(0), make_portrait(1)]
    assert all(focus_prior(scene.rgb) is None for scene in textured)
    close_up = make_close_up(0)
    prior = focus_prior(close_up.rgb)
    assert prior is not None
    assert prior.sharp[close_up.truth].mean() > 0.9


def test_a_patch_at_the_margin_beside_the_centred_subject_is_left_out() -> None:
    # Like the glow of lights on a horizon beside a rocket: distinct from the background,
    # a third of the subject's size, but pushed to the image's margin.
    scene = make_scene(0)
    rgb = scene.rgb.copy()
    height, width = scene.truth.shape
    patch = np.zeros_like(scene.truth)
    patch[int(height * 0.72) : int(height * 0.93), int(width * 0.04) : int(width * 0.22)] = True
    assert not (patch & scene.truth).any() and patch.sum() > 0.25 * scene.truth.sum()
    rgb[patch] = (250, 240, 60)
    alpha = cutout_alpha(rgb, RemoveBackgroundOptions())
    assert (alpha[patch] > 127).mean() < 0.05
    assert iou(alpha, scene.truth) >= 0.85


def test_a_large_photo_is_segmented_at_working_size_and_returned_at_full_size() -> None:
    scene = make_scene(4, width=WORKING_SIDE * 2, height=WORKING_SIDE * 3 // 2)
    result = Image.open(io.BytesIO(render(png_of(scene.rgb), RemoveBackgroundOptions())))
    assert result.mode == "RGBA"
    assert result.size == (scene.rgb.shape[1], scene.rgb.shape[0])
    assert iou(np.asarray(result)[..., 3], scene.truth) >= 0.85


@pytest.mark.parametrize("mode", ["L", "P", "RGBA", "LA"])
def test_grayscale_palette_and_transparent_inputs_give_an_rgba_cutout(mode: str) -> None:
    scene = make_scene(1, width=160, height=120)  # its subject differs in brightness too
    result = Image.open(io.BytesIO(render(png_of(scene.rgb, mode), RemoveBackgroundOptions())))
    assert result.mode == "RGBA"
    assert result.size == (160, 120)
    assert iou(np.asarray(result)[..., 3], scene.truth) >= 0.85


def test_the_rgba_cutout_keeps_the_input_colours() -> None:
    scene = make_scene(1, width=160, height=120)
    png = render(png_of(scene.rgb), RemoveBackgroundOptions())
    result = np.asarray(Image.open(io.BytesIO(png)))
    assert np.array_equal(result[..., :3], scene.rgb)


def test_the_same_input_gives_the_same_cutout() -> None:
    image = png_of(make_scene(2, width=160, height=120).rgb)
    assert render(image, RemoveBackgroundOptions()) == render(image, RemoveBackgroundOptions())


def test_unset_options_mean_the_apis_defaults() -> None:
    image = png_of(make_scene(3, width=160, height=120).rgb)
    explicit = RemoveBackgroundOptions(
        erode_size=15, foreground_threshold=240, background_threshold=15,
        hair_optimization="auto", remove_type="General", only_mask=False,
    )
    assert render(image, RemoveBackgroundOptions()) == render(image, explicit)


def test_an_unreadable_image_is_refused_naming_raw_image() -> None:
    with pytest.raises(InvalidInput) as refused:
        render(b"not an image at all", RemoveBackgroundOptions())
    assert refused.value.field == "RawImage"


def test_a_box_outside_the_image_is_refused_naming_box() -> None:
    image = png_of(make_scene(0, width=160, height=120).rgb)
    with pytest.raises(InvalidInput) as refused:
        render(image, RemoveBackgroundOptions(box=(10, 10, 200, 100)))
    assert refused.value.field == "Box"


def test_a_featureless_image_keeps_the_centre_as_its_subject() -> None:
    white = np.full((60, 80, 3), 255, np.uint8)
    alpha = cutout_alpha(white, RemoveBackgroundOptions())
    assert alpha[0, 0] == 0 and alpha[30, 40] == 255


@pytest.mark.parametrize("size", [(1, 1), (3, 2), (1, 50)])
def test_images_too_small_to_segment_are_taken_whole(size: tuple[int, int]) -> None:
    tiny = np.full((*size, 3), 90, np.uint8)
    assert (cutout_alpha(tiny, RemoveBackgroundOptions()) == 255).all()


def test_every_shade_of_a_gradient_on_the_edges_counts_as_background() -> None:
    shades = np.linspace(0, 1, 120, dtype=np.float32)[:, None, None]
    sky = (np.array([20, 30, 90]) + shades * np.array([120, 110, 120])).astype(np.float32)
    rgb = np.broadcast_to(sky, (120, 160, 3)).astype(np.uint8).copy()
    rgb[50:70, 70:90] = (230, 200, 40)
    edges = np.zeros((120, 160), bool)
    edges[:, :3] = edges[:, -3:] = True  # the sides see every shade, top to bottom
    distance = edge_colour_distance(rgb, edges)
    assert distance[30:40, 20:140].max() < 10  # the sky inside: a known colour
    assert distance[55:65, 75:85].min() > 60  # the yellow patch: far from all of them
