"""Signing and body building for a 10 MB image: the client's way against the obvious way.

1. Signing throughput (MB of image per second): the streaming signer (`picpik.signing.sign`, the
   hash fed piece by piece) against the naive baseline (join one big string to sign, then SHA1).
2. The whole body (base64 + signature + JSON): `picpik.body.build_signed_body` against the
   obvious way (base64 str, data URI, joined string to sign, `json.dumps`), in time and in peak
   memory (tracemalloc, as a multiple of the image's size).
Both sides run in the same process on the same random (incompressible, like a JPEG) image.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import time
import tracemalloc
from collections.abc import Callable
from typing import Any

from picpik.body import build_signed_body
from picpik.signing import encode_value, sign

IMAGE_BYTES = 10_000_000  # "10 MB"
PREFIX = "data:image/jpeg;base64,"
KEY = "bench-private-key"
PARAMS: dict[str, Any] = {
    "Action": "RemoveBackground", "PublicKey": "bench-public", "Box": [1, 2, 300, 400],
    "ErodeSize": 15, "OnlyMask": False, "request_uuid": "9d7a3c52-5f0e-4d2b-8a4e-2f1b6c0d7e91",
}
REPEATS = 5


def naive_sign(params: dict[str, Any], private_key: str) -> str:
    """The baseline: one joined string to sign (a second copy of the image), then SHA1."""
    def text(value: Any) -> str:
        return b"".join(encode_value(value)).decode()

    joined = "".join(name + text(params[name]) for name in sorted(params)) + private_key
    return hashlib.sha1(joined.encode()).hexdigest()


def obvious_body(image: bytes) -> bytes:
    """The obvious body: base64 str, data URI, naive signature, json.dumps."""
    params = {**PARAMS, "RawImage": PREFIX + base64.b64encode(image).decode()}
    return json.dumps({**params, "Signature": naive_sign(params, KEY)}).encode()


def streaming_body(image: bytes) -> bytearray:
    return build_signed_body(PARAMS, KEY, large_name="RawImage", large_prefix=PREFIX,
                             large_bytes=image)


def best_seconds(work: Callable[[], object]) -> float:
    times = []
    for _ in range(REPEATS):
        started = time.perf_counter()
        work()
        times.append(time.perf_counter() - started)
    return min(times)


def peak_bytes(work: Callable[[], object]) -> int:
    """Peak bytes allocated while `work` runs (what it holds at once, its result included)."""
    tracemalloc.start()
    try:
        tracemalloc.reset_peak()
        result = work()
        peak = tracemalloc.get_traced_memory()[1]
        del result
        return peak
    finally:
        tracemalloc.stop()


def bench_signing(image: bytes) -> None:
    raw_text = PREFIX + base64.b64encode(image).decode()
    raw_bytes = raw_text.encode()
    as_text = {**PARAMS, "RawImage": raw_text}
    assert sign(as_text, KEY) == naive_sign(as_text, KEY)
    mb = IMAGE_BYTES / 1e6
    naive = best_seconds(lambda: naive_sign(as_text, KEY))
    streamed_text = best_seconds(lambda: sign(as_text, KEY))
    streamed_bytes = best_seconds(lambda: sign({**PARAMS, "RawImage": raw_bytes}, KEY))
    print(f"signing a {mb:.0f} MB image ({len(raw_text) / 1e6:.1f} MB of base64), best of "
          f"{REPEATS}:")
    print(f"  naive (join one string, then sha1)  {mb / naive:8.0f} MB/s  {naive * 1e3:6.1f} ms")
    print(f"  streaming, RawImage as str          {mb / streamed_text:8.0f} MB/s  "
          f"{streamed_text * 1e3:6.1f} ms  ratio {naive / streamed_text:.2f}x")
    print(f"  streaming, RawImage as bytes        {mb / streamed_bytes:8.0f} MB/s  "
          f"{streamed_bytes * 1e3:6.1f} ms  ratio {naive / streamed_bytes:.2f}x")


def bench_body(image: bytes) -> None:
    assert json.loads(bytes(streaming_body(image))) == json.loads(obvious_body(image))
    obvious_s = best_seconds(lambda: obvious_body(image))
    ours_s = best_seconds(lambda: streaming_body(image))
    obvious_peak = peak_bytes(lambda: obvious_body(image)) / IMAGE_BYTES
    ours_peak = peak_bytes(lambda: streaming_body(image)) / IMAGE_BYTES
    print("whole body (base64 + sign + JSON) of the same image:")
    print(f"  obvious (b64 str, joined sign, json.dumps)  {obvious_s * 1e3:6.1f} ms  "
          f"peak {obvious_peak:.2f}x the image")
    print(f"  build_signed_body                           {ours_s * 1e3:6.1f} ms  "
          f"peak {ours_peak:.2f}x the image")
    print(f"  ratios: {obvious_s / ours_s:.2f}x faster, {obvious_peak / ours_peak:.2f}x less "
          "peak memory")


def main() -> None:
    image = os.urandom(IMAGE_BYTES)
    bench_signing(image)
    bench_body(image)


if __name__ == "__main__":
    main()
