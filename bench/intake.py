"""Benchmark: the image check a submit runs before its call, per megapixel and per format.

Three ways to look at the same image, measured in the same run: the header-only check
(`inspect_image`, the old check and the baseline), the full check the submit stage now runs
(`inspect_image` + `check_decodes`: a JPEG decoded at 1/8 scale, other formats decoded whole),
and a plain full Pillow decode (what the check would cost without the JPEG draft). The full
check's cost is also put beside the work the submit does anyway with the same bytes: building
the signed body (base64 + SHA1). Run: `python -m bench intake` from the repository root.
"""

from __future__ import annotations

import io
import time
from collections.abc import Callable

import numpy as np
from PIL import Image

from config import Settings
from picpik.body import build_signed_body
from tasks.inputs.images import check_decodes, inspect_image

SIZES = [(2000, 1500), (4000, 3000)]  # 3 and 12 megapixels
FORMATS = ["JPEG", "PNG", "WEBP", "BMP", "TIFF"]


def _photo(fmt: str, width: int, height: int) -> bytes:
    """A smooth, photo-like picture: compressed formats get realistic sizes."""
    rng = np.random.default_rng(11)
    small = (rng.random((height // 16, width // 16, 3)) * 255).astype("uint8")
    image = Image.fromarray(small).resize((width, height), Image.Resampling.BICUBIC)
    buffer = io.BytesIO()
    image.save(buffer, format=fmt, **({"quality": 90} if fmt == "JPEG" else {}))
    return buffer.getvalue()


def _best_of(runs: int, work: Callable[[], object]) -> float:
    best = float("inf")
    for _ in range(runs):
        started = time.perf_counter()
        work()
        best = min(best, time.perf_counter() - started)
    return best


def _plain_decode(data: bytes) -> None:
    with Image.open(io.BytesIO(data)) as image:
        image.load()


def main() -> None:
    """Print, per format and size: ms for header, full check, plain decode and signed body;
    the full check per megapixel; and the ratios full/header and full/body."""
    # Uncompressed 12 MP BMP and TIFF are 36 MB: above the default byte cap, so lift it here.
    settings = Settings(_env_file=None, max_image_bytes=64 << 20)  # type: ignore[call-arg]
    print("ms, best of runs; check = header + decode check (JPEG at 1/8 scale)")
    print(f"{'format':>6} {'size':>10} {'MB':>5} {'header':>7} {'check':>7} {'ms/MP':>6} "
          f"{'decode':>7} {'body':>6} {'check/header':>12} {'check/body':>10}")
    for width, height in SIZES:
        megapixels = width * height / 1e6
        for fmt in FORMATS:
            data = _photo(fmt, width, height)
            runs = 5 if megapixels < 5 else 3

            def check(data: bytes = data) -> None:
                check_decodes(data, inspect_image(data, settings))

            header_s = _best_of(runs, lambda data=data: inspect_image(data, settings))
            check_s = _best_of(runs, check)
            decode_s = _best_of(runs, lambda data=data: _plain_decode(data))
            body_s = _best_of(runs, lambda data=data: build_signed_body(
                {"Action": "RemoveBackground", "PublicKey": "p"}, "k", large_name="RawImage",
                large_prefix="data:image/png;base64,", large_bytes=data))
            print(f"{fmt:>6} {width:>4}x{height:<5} {len(data) / 1e6:5.1f} "
                  f"{header_s * 1e3:7.2f} {check_s * 1e3:7.1f} {check_s * 1e3 / megapixels:6.1f} "
                  f"{decode_s * 1e3:7.1f} {body_s * 1e3:6.1f} {check_s / header_s:12.0f} "
                  f"{check_s / body_s:10.2f}")


if __name__ == "__main__":
    main()
