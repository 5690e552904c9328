"""A hostile corpus through a real worker: every input below must end FAILED, with an error
that names the reference (a password blanked) and the field, and the local API server must
record no RemoveBackground call for any of it. A good image through the same worker succeeds
for one call, so the worker did have the chance to pay.

Real Redis, a real `celery -A tasks worker`, the real local API server, and a loopback HTTP
server on 127.0.0.2, the only address the worker may reach (`CUTOUT_FETCH_ALLOW=127.0.0.2`), so
127.0.0.1 and every other private form stay refused. Caps are lowered to keep files small:
1 MB and 1 megapixel; retries are off, so a source that may answer later fails at once."""

from __future__ import annotations

import io
import struct
import zlib
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image

from producers import api
from tasks.inputs.intake import shown_reference
from tasks.store.records import JobState
from tests.support.addresses import PRIVATE_ADDRESSES
from tests.support.broken_images import corrupted, photo_bytes, truncated
from tests.support.emulator_server import EmulatorProcess, emulator, emulator_process
from tests.support.redis_server import RedisServer
from tests.support.workers import ImageServer, Pipeline, pipeline_running, write_pngs

__all__ = ["emulator", "emulator_process"]  # fixtures used here, imported for pytest

MAX_BYTES = 1_000_000
MAX_PIXELS = 1_000_000
SERVER_HOST = "127.0.0.2"


@dataclass(frozen=True)
class Case:
    """One hostile input: its reference (a template over Places), the options it sets, the
    field its error names and a piece of the reason."""

    name: str
    reference: str
    reason: str
    error_field: str = "reference"
    options: dict[str, Any] = field(default_factory=dict)


def _url_host(address: str) -> str:
    return f"[{address}]" if ":" in address else address


FILES = [
    Case("zero-byte file", "{inside}/empty.jpg", "an empty file"),
    Case("text file named .jpg", "{inside}/notes.jpg", "not an image in an allowed format"),
    Case("SVG", "{inside}/drawing.svg", "not an image in an allowed format"),
    Case("GIF when not allowed", "{inside}/anim.gif", "not an image in an allowed format"),
    Case("truncated JPEG", "{inside}/cut.jpg", "JPEG image cannot be decoded"),
    Case("truncated PNG", "{inside}/cut.png", "PNG image cannot be decoded"),
    Case("truncated WebP", "{inside}/cut.webp", "unreadable image"),
    Case("corrupt JPEG", "{inside}/noise.jpg", "JPEG image cannot be decoded"),
    Case("corrupt PNG", "{inside}/noise.png", "PNG image cannot be decoded"),
    Case("over the byte cap", "{inside}/big.png", f"larger than {MAX_BYTES} bytes"),
    Case("decompression bomb", "{inside}/bomb.png", "decompression bomb"),
    Case("pixels over the cap", "{inside}/wide.png", f"more than the cap of {MAX_PIXELS}"),
    Case("Box outside the image", "{inside}/good.png", "outside", error_field="Box",
         options={"Box": [0, 0, 500, 500]}),
    Case("path outside the files root", "{root}/outside.png", "outside the files root"),
    Case("relative path climbing out", "../outside.png", "outside the files root"),
    Case("symlink escaping the root", "{inside}/escape.png", "outside the files root"),
    Case("directory", "{inside}/folder", "not a regular file"),
    Case("missing file", "{inside}/missing.png", "no such file"),
    Case("NUL byte in a path", "{inside}/a\x00b.png", "embedded null byte"),
    Case("file:// URL of a system file", "file:///etc/passwd", "outside the files root"),
    Case("file:// URL outside the root", "file://{root}/outside.png", "outside the files root"),
    Case("file:// URL naming another host", "file://files.example/share/a.png",
         "must name a local file"),
]
SCHEMES = [
    Case("ftp:", "ftp://files.example/a.png", "scheme 'ftp' is not allowed"),
    Case("data:", "data:image/png;base64,iVBORw0KGgo=", "scheme 'data' is not allowed"),
    Case("javascript:", "javascript:alert(1)", "scheme 'javascript' is not allowed"),
    Case("an http URL without a host", "http:///photo.png", "not an http(s) URL"),
    Case("a port out of range", "http://{host}:99999/good.png", "Port out of range"),
    Case("URL with credentials", "http://user:s3cret@{server}/good.png", "with credentials"),
    Case("URL with a CRLF", "{srv}/good.png\r\nX-Injected: 1", "control characters"),
]
NETWORK = [
    Case("404", "{srv}/missing.png", "answered HTTP 404"),
    Case("a source answering 500", "{srv}/status/500", "answered HTTP 500"),
    Case("a body that never ends", "{srv}/endless", f"larger than {MAX_BYTES} bytes"),
    Case("slow drip past the fetch timeout", "{srv}/slow", "took longer than 2"),
    Case("redirect to the metadata address", "{srv}/redirect?to=http://169.254.169.254/latest",
         "169.254.169.254, which is not a public address"),
    Case("redirect to loopback", "{srv}/redirect?to=http://127.0.0.1:{port}/good.png",
         "127.0.0.1, which is not a public address"),
    Case("redirect to a file", "{srv}/redirect?to=file:///etc/passwd", "not an http(s) URL"),
    Case("redirect loop", "{srv}/loop", "more than 5 redirects"),
    Case("hostname resolving to loopback", "http://localhost:{port}/good.png",
         "127.0.0.1, which is not a public address"),
    Case("unresolvable host", "http://no-such-host.invalid/a.png", "cannot resolve"),
]
# The address forms of tests/test_fetch.py (the guard's own unit tests), now fetched for real,
# plus the same addresses written the ways a URL parser may read them.
ADDRESS_FORMS = [
    Case(f"private address {address}", f"http://{_url_host(address)}:{{port}}/good.png",
         "which is not a public address") for address in PRIVATE_ADDRESSES
] + [
    Case(f"{written} ({meant})", f"http://{written}:{{port}}/good.png", f"resolves to {meant},")
    for written, meant in [
        ("2130706433", "127.0.0.1"), ("0177.0.0.1", "127.0.0.1"), ("0x7f.0.0.1", "127.0.0.1"),
        ("0x7f000001", "127.0.0.1"), ("127.1", "127.0.0.1"), ("0", "0.0.0.0"),
        ("2852039166", "169.254.169.254"), ("0xa9fea9fe", "169.254.169.254"),
        ("[::ffff:169.254.169.254]", "::ffff:a9fe:a9fe"),
        ("[fd00:ec2::254]", "fd00:ec2::254"),
    ]
]
CORPUS = FILES + SCHEMES + NETWORK + ADDRESS_FORMS


@dataclass(frozen=True)
class Hostile:
    pipeline: Pipeline
    places: dict[str, str]


@pytest.fixture(scope="module")
def hostile(redis_server: RedisServer, emulator_process: EmulatorProcess,
            tmp_path_factory: pytest.TempPathFactory) -> Iterator[Hostile]:
    redis_server.client().flushall()  # never while workers run: kombu keeps bindings there
    root = tmp_path_factory.mktemp("hostile")
    inside = root / "in" / "h"
    _write_corpus(inside, root)
    with ImageServer(inside, host=SERVER_HOST) as server, pipeline_running(
            redis_server.url, emulator_process, root, count=1, concurrency=4,
            files_root=str(root / "in"), fetch_allow=SERVER_HOST, max_image_bytes=MAX_BYTES,
            max_image_pixels=MAX_PIXELS, fetch_timeout_s=2, max_retries=0) as running:
        port = str(server.server.server_address[1])
        yield Hostile(running, {"inside": str(inside), "root": str(root), "srv": server.url,
                                "server": f"{SERVER_HOST}:{port}", "host": SERVER_HOST,
                                "port": port})


def _write_corpus(inside: Path, root: Path) -> None:
    write_pngs(inside, 1, prefix="good")
    (inside / "good0000.png").rename(inside / "good.png")
    (inside / "empty.jpg").write_bytes(b"")
    (inside / "notes.jpg").write_text("meeting notes, not a photo\n")
    (inside / "drawing.svg").write_text(
        '<svg xmlns="http://www.w3.org/2000/svg" width="64" height="48">'
        '<rect width="64" height="48" fill="red"/></svg>')
    Image.new("RGB", (64, 48), (0, 90, 200)).save(inside / "anim.gif")
    for fmt, ext in [("JPEG", "jpg"), ("PNG", "png"), ("WEBP", "webp")]:
        (inside / f"cut.{ext}").write_bytes(truncated(photo_bytes(fmt)))
    for fmt, ext in [("JPEG", "jpg"), ("PNG", "png")]:
        (inside / f"noise.{ext}").write_bytes(corrupted(photo_bytes(fmt)))
    noise = np.random.default_rng(5).integers(0, 256, (700, 700, 3), dtype=np.uint8)
    Image.fromarray(noise).save(inside / "big.png")  # 0.49 MP, about 1.5 MB: over 1 MB
    (inside / "bomb.png").write_bytes(_png_bomb(100_000, 100_000))
    Image.new("L", (1200, 1000), 128).save(inside / "wide.png")  # 1.2 MP, a few kB
    Image.new("RGB", (64, 48), (9, 9, 9)).save(root / "outside.png")
    (inside / "escape.png").symlink_to(root / "outside.png")
    (inside / "folder").mkdir()


def _png_bomb(width: int, height: int) -> bytes:
    """A tiny PNG whose header claims width x height pixels (10 gigapixels: a bomb)."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        body = kind + data
        return struct.pack(">I", len(data)) + body + struct.pack(">I", zlib.crc32(body))

    header = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    pixels = zlib.compress(b"\0" * 4096)
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", pixels)
            + chunk(b"IEND", b""))


def test_the_corpus_holds_at_least_thirty_hostile_inputs() -> None:
    assert len(CORPUS) >= 30 and len({case.name for case in CORPUS}) == len(CORPUS)


@pytest.mark.parametrize("case", CORPUS, ids=[case.name for case in CORPUS])
def test_a_hostile_input_fails_naming_the_reference_and_the_field_and_costs_no_call(
        case: Case, hostile: Hostile, emulator: EmulatorProcess) -> None:
    reference = case.reference.format(**hostile.places)
    s = hostile.pipeline.settings
    job_id = api.enqueue(reference, batch="hostile", settings=s, **case.options)

    record = api.wait([job_id], timeout_s=60, settings=s)[job_id]

    assert record.state is JobState.FAILED, (record, hostile.pipeline.logs()[-3000:])
    assert record.error_field == case.error_field
    message = record.error_message or ""
    assert case.reason in message
    assert shown_reference(reference) in message  # which image, in the job's own error
    assert "s3cret" not in message
    assert "RemoveBackground" not in emulator.key_stats()["calls"]
    assert all(w.alive() for w in hostile.pipeline.workers)


def test_a_good_image_through_the_same_worker_succeeds_for_one_call(
        hostile: Hostile, emulator: EmulatorProcess) -> None:
    s = hostile.pipeline.settings
    for reference in ["{inside}/good.png", "{srv}/good.png"]:
        # force: the same bytes by file and by URL would otherwise reuse the first cutout
        job_id = api.enqueue(reference.format(**hostile.places), batch="control", settings=s,
                             force=True)
        assert api.wait([job_id], timeout_s=60, settings=s)[job_id].state is JobState.SUCCEEDED
    assert emulator.key_stats()["calls"]["RemoveBackground"] == {"ok": 2}


def test_the_bomb_is_tiny_on_disk(hostile: Hostile) -> None:
    bomb = Path(hostile.places["inside"]) / "bomb.png"
    assert bomb.stat().st_size < 1000
    with pytest.raises(Image.DecompressionBombError), Image.open(io.BytesIO(bomb.read_bytes())):
        pass
