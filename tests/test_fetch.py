"""Untrusted input stays outside: files only under the root, URLs only to public addresses
(or an explicit allow-list), redirects re-checked, byte/time/format/pixel caps. Plus the pure
helpers the stages use: output names, backoff (the output store: tests/test_outputs.py)."""

from __future__ import annotations

import io
import ipaddress
import random
from collections.abc import Iterator
from pathlib import Path

import pytest
from PIL import Image

from config import Settings
from picpik.errors import InvalidInput, Unavailable
from tasks.inputs.fetch import fetch, reference_name
from tasks.inputs.images import inspect_image
from tasks.inputs.netguard import Allowance, is_public
from tasks.outputs.storage import output_names
from tasks.stages.backoff import poll_delay, retry_delay
from tests.support.addresses import PRIVATE_ADDRESSES, PUBLIC_ADDRESSES
from tests.support.workers import ImageServer, write_pngs


@pytest.fixture
def root(tmp_path: Path) -> Path:
    write_pngs(tmp_path / "in", 1)
    return tmp_path / "in"


@pytest.fixture
def server(root: Path) -> Iterator[ImageServer]:
    with ImageServer(root) as running:
        yield running


def settings(root: Path, **kw: object) -> Settings:
    return Settings(files_root=root, fetch_timeout_s=2, **kw)  # type: ignore[arg-type]


def refused(reference: str, s: Settings) -> str:
    with pytest.raises(InvalidInput) as info:
        fetch(reference, s)
    assert info.value.field == "reference"
    return info.value.message


def test_a_file_under_the_root_is_read_by_absolute_or_relative_path(root: Path) -> None:
    data = (root / "p0000.png").read_bytes()
    assert fetch(str(root / "p0000.png"), settings(root)) == data
    assert fetch("p0000.png", settings(root)) == data
    assert fetch((root / "p0000.png").as_uri(), settings(root)) == data


def test_a_missing_file_is_refused_by_name(root: Path) -> None:
    assert "no such file" in refused(str(root / "nope.png"), settings(root))


def test_a_file_outside_the_root_is_refused_even_through_a_symlink(root: Path,
                                                                   tmp_path: Path) -> None:
    outside = tmp_path / "secret.png"
    outside.write_bytes((root / "p0000.png").read_bytes())
    (root / "link.png").symlink_to(outside)
    assert "outside the files root" in refused(str(outside), settings(root))
    assert "outside the files root" in refused("link.png", settings(root))
    assert "outside the files root" in refused("../secret.png", settings(root))


def test_a_file_over_the_byte_cap_is_refused(root: Path) -> None:
    assert "larger than 10 bytes" in refused("p0000.png", settings(root, max_image_bytes=10))


def test_other_schemes_are_refused(root: Path) -> None:
    assert "not allowed" in refused("ftp://example.com/a.png", settings(root))


def test_a_loopback_url_is_refused_unless_allowed(root: Path, server: ImageServer) -> None:
    url = f"{server.url}/p0000.png"
    assert "not a public address" in refused(url, settings(root))
    data = (root / "p0000.png").read_bytes()
    assert fetch(url, settings(root, fetch_allow="127.0.0.1")) == data
    assert fetch(url, settings(root, fetch_allow="127.0.0.0/8")) == data


def test_a_redirect_to_a_private_address_is_refused(root: Path, server: ImageServer) -> None:
    s = settings(root, fetch_allow="127.0.0.1")
    to_metadata = f"{server.url}/redirect?to=http://169.254.169.254/latest/meta-data"
    assert "169.254.169.254" in refused(to_metadata, s)
    to_self = f"{server.url}/redirect?to=/p0000.png"
    assert fetch(to_self, s) == (root / "p0000.png").read_bytes()


def test_a_body_over_the_byte_cap_is_refused_while_streaming(root: Path,
                                                             server: ImageServer) -> None:
    s = settings(root, fetch_allow="127.0.0.1", max_image_bytes=200_000)
    assert "larger than 200000 bytes" in refused(f"{server.url}/endless", s)


def test_a_source_slower_than_the_time_cap_is_a_retryable_error(root: Path,
                                                                server: ImageServer) -> None:
    s = settings(root, fetch_allow="127.0.0.1")
    with pytest.raises(Unavailable):
        fetch(f"{server.url}/slow", s)


def test_an_unresolvable_host_is_refused(root: Path) -> None:
    assert "cannot resolve" in refused("http://no-such-host.invalid/a.png", settings(root))


@pytest.mark.parametrize("address", PRIVATE_ADDRESSES)
def test_private_and_special_addresses_are_not_public(address: str) -> None:
    assert not is_public(ipaddress.ip_address(address))


@pytest.mark.parametrize("address", PUBLIC_ADDRESSES)
def test_ordinary_internet_addresses_are_public(address: str) -> None:
    assert is_public(ipaddress.ip_address(address))


def test_the_allow_list_takes_hosts_and_networks() -> None:
    allow = Allowance(["10.0.0.0/8", "images.internal"])
    assert allow.permits("x", ipaddress.ip_address("10.9.9.9"))
    assert allow.permits("images.internal", ipaddress.ip_address("192.168.0.5"))
    assert not allow.permits("x", ipaddress.ip_address("192.168.0.5"))


def _image(fmt: str, size: tuple[int, int] = (64, 48)) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", size).save(buffer, format=fmt)
    return buffer.getvalue()


def test_image_checks_read_format_and_size_from_the_header(root: Path) -> None:
    info = inspect_image(_image("JPEG"), settings(root))
    assert (info.format, info.mime, info.width, info.height) == ("JPEG", "image/jpeg", 64, 48)


def test_images_not_allowed_or_not_images_or_too_many_pixels_are_refused(root: Path) -> None:
    s = settings(root)
    for data, reason in [(b"hello, not an image", "allowed format"),
                         (_image("GIF"), "allowed format")]:
        with pytest.raises(InvalidInput, match=reason):
            inspect_image(data, s)
    with pytest.raises(InvalidInput, match="more than the cap"):
        inspect_image(_image("PNG", (200, 100)), settings(root, max_image_pixels=10_000))


def test_outputs_are_named_after_the_input() -> None:
    assert reference_name("https://x.org/a/photo.jpg?size=2") == "photo"
    assert reference_name("/data/cat.webp") == "cat"
    assert output_names("photo", 1, only_mask=False) == ["photo.png"]
    assert output_names("photo", 2, only_mask=True) == ["photo.mask.png", "photo-2.mask.png"]


def test_retry_delays_grow_exponentially_with_jitter_and_stay_under_the_cap() -> None:
    rng = random.Random(7)
    for retries in range(12):
        step = min(30.0, 0.5 * 2**retries)
        delays = [retry_delay(retries, 0.5, 30.0, rng) for _ in range(50)]
        assert all(step / 2 <= d <= step for d in delays)
        assert len(set(delays)) > 1


def test_poll_delays_double_up_to_the_maximum() -> None:
    assert [poll_delay(n, 1.0, 10.0) for n in range(1, 7)] == [1, 2, 4, 8, 10, 10]
