"""Benchmark: the classical matting engine's time per megapixel, against a baseline.

The baseline is what any image service pays anyway for the same photo: decode the JPEG, one
Gaussian blur, encode an RGBA PNG at the same compression level. The ratio says how many such
passes the engine costs. Run: `python -m bench.matting` from the repository root.
"""

from __future__ import annotations

import io
import time
from collections.abc import Callable
from typing import Any

import cv2
import numpy as np
from PIL import Image

from emulator.matting import WORKING_SIDE, render
from emulator.matting.imageio import decode_rgb, encode_png
from emulator.matting.synthetic import make_scene
from picpik.models import RemoveBackgroundOptions

SIZES = [(640, 480), (2000, 1500), (4000, 3000)]  # 0.3, 3 and 12 megapixels


def _jpeg(rgb: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(rgb).save(buffer, "JPEG", quality=90)
    return buffer.getvalue()


def _baseline(image: bytes) -> bytes:
    rgb = decode_rgb(image)
    alpha = cv2.GaussianBlur(rgb[..., 1], (0, 0), 2.0)
    return encode_png(rgb, alpha, only_mask=False)


def _best_of(runs: int, work: Callable[..., bytes], *args: Any) -> tuple[float, bytes]:
    best, result = float("inf"), b""
    for _ in range(runs):
        started = time.perf_counter()
        result = work(*args)
        best = min(best, time.perf_counter() - started)
    return best, result


def _iou(png: bytes, truth: np.ndarray) -> float:
    cut = np.asarray(Image.open(io.BytesIO(png)))[..., 3] > 127
    return float((cut & truth).sum() / max((cut | truth).sum(), 1))


def main() -> None:
    """Print, per size, the engine's and the baseline's seconds, s/MP, the ratio and the IoU."""
    print(f"classical matting engine, working side {WORKING_SIDE} px, best of runs")
    print(f"{'size':>11} {'MP':>5} {'engine s':>9} {'s/MP':>6} {'baseline s':>11} "
          f"{'ratio':>6} {'IoU':>6}")
    for width, height in SIZES:
        scene = make_scene(3, width=width, height=height)
        image = _jpeg(scene.rgb)
        megapixels = width * height / 1e6
        runs = 3 if megapixels < 5 else 2
        engine_s, cutout = _best_of(runs, render, image, RemoveBackgroundOptions())
        baseline_s, _ = _best_of(runs, _baseline, image)
        print(f"{width:>5}x{height:<5} {megapixels:5.1f} {engine_s:9.2f} "
              f"{engine_s / megapixels:6.2f} {baseline_s:11.2f} "
              f"{engine_s / baseline_s:6.1f} {_iou(cutout, scene.truth):6.3f}")


if __name__ == "__main__":
    main()
