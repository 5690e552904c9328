"""The local API server's plain parts: windows, credits, settings, flags, the render hook."""

from __future__ import annotations

import io

import pytest
import requests
from PIL import Image
from pydantic import ValidationError

from emulator.__main__ import parse_args
from emulator.ledger import KeyLedger, SlidingWindow
from emulator.render import render_result
from emulator.runtime import ConfigPatch, RuntimeConfig
from emulator.settings import EmulatorSettings
from picpik.errors import InvalidInput
from picpik.models import parse_options
from tests.support.emulator_server import EmulatorProcess


def png_bytes(width: int, height: int) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (width, height), "white").save(buffer, format="PNG")
    return buffer.getvalue()


def test_a_sliding_window_remembers_the_busiest_window_it_ever_saw() -> None:
    window = SlidingWindow()
    for now in (0.0, 0.1, 0.2, 0.95, 1.05, 1.5, 3.0):
        window.add(now, 1.0)
    assert window.max_count == 4  # 0.1, 0.2, 0.95, 1.05 fall in (0.05, 1.05]
    assert window.count(3.5, 1.0) == 1


def test_the_limiter_admits_capacity_calls_per_window_and_says_how_long_to_wait() -> None:
    ledger = KeyLedger(credits_left=None)
    admitted = [ledger.admit(now, 1.0, 2) is None for now in (0.0, 0.4, 0.6, 1.0, 1.2)]
    assert admitted == [True, True, False, True, False]
    assert ledger.admit(1.3, 1.0, 2) == pytest.approx(0.1)  # 0.4 leaves at 1.4
    assert ledger.admitted.max_count == 2


def test_credits_run_out_and_unlimited_credits_never_do() -> None:
    limited, unlimited = KeyLedger(credits_left=1), KeyLedger(credits_left=None)
    assert [limited.spend_credit() for _ in range(2)] == [True, False]
    assert all(unlimited.spend_credit() for _ in range(50)) and unlimited.credits_spent == 50


def test_a_window_capacity_is_rate_times_window_but_at_least_one_call() -> None:
    assert RuntimeConfig(rate_limit=0).window_capacity is None
    assert RuntimeConfig(rate_limit=5, rate_window_s=1).window_capacity == 5
    assert RuntimeConfig(rate_limit=0.5, rate_window_s=10).window_capacity == 5
    assert RuntimeConfig(rate_limit=0.3, rate_window_s=1).window_capacity == 1


def test_a_config_patch_changes_only_the_fields_it_sets() -> None:
    config = RuntimeConfig(rate_limit=3, queue_s=1)
    patched = config.patched(ConfigPatch.model_validate({"queue_s": 2, "faults": {"drop": 0.5}}))
    assert (patched.rate_limit, patched.queue_s, patched.faults.drop) == (3, 2, 0.5)


def test_the_runtime_config_starts_from_the_settings_and_their_fault_fractions() -> None:
    settings = EmulatorSettings(rate_limit=4, rate_window_s=2, throttle_http_status=429,
                                queue_s=3, run_s=5, result_ttl_s=7, fault_drop=0.25,
                                fault_slow_s=1.5, fault_result_5xx=0.75)
    config = RuntimeConfig.from_settings(settings)
    assert (config.rate_limit, config.rate_window_s, config.throttle_http_status) == (4, 2, 429)
    assert (config.queue_s, config.run_s, config.result_ttl_s) == (3, 5, 7)
    assert (config.faults.drop, config.faults.slow_s, config.faults.result_5xx) == (0.25, 1.5, 0.75)
    assert config.faults.error_5xx == 0


def test_key_pairs_come_comma_separated_and_a_malformed_one_is_refused() -> None:
    settings = EmulatorSettings(keys="a:s3cret,b:2")
    assert settings.key_pairs() == {"a": "s3cret", "b": "2"}
    with pytest.raises(ValidationError) as caught:
        EmulatorSettings(keys=("no-colon",))
    assert "PUBLIC:PRIVATE" in str(caught.value)
    assert "s3cret" not in repr(settings) and "s3cret" not in str(settings)


@pytest.mark.parametrize("keys", ["a:s3cret,b=s3cret", "a:s3cret,b:"], ids=str)
def test_a_malformed_key_pair_is_refused_without_showing_any_private_key(keys: str) -> None:
    with pytest.raises(ValidationError) as caught:
        EmulatorSettings(keys=keys)
    assert "PUBLIC:PRIVATE" in str(caught.value)
    assert "s3cret" not in str(caught.value)


def test_flags_override_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CUTOUT_EMULATOR_RATE_LIMIT", "9")
    monkeypatch.setenv("CUTOUT_EMULATOR_KEYS", "env:secret")
    assert parse_args([]).rate_limit == 9 and parse_args([]).key_pairs() == {"env": "secret"}
    settings = parse_args(["--rate-limit", "3", "--key", "p:q", "--fault-drop", "0.25"])
    assert (settings.rate_limit, settings.key_pairs(), settings.fault_drop) == (3, {"p": "q"}, 0.25)


def test_a_bad_flag_value_stops_the_cli_with_the_field_named(
    capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit):
        parse_args(["--fault-drop", "2"])
    assert "fault_drop" in capsys.readouterr().err


def test_the_rendered_cutout_is_an_rgba_png_of_the_input_size_with_a_transparent_corner(
) -> None:
    png = render_result(png_bytes(80, 60), parse_options({"Box": [10, 10, 70, 50]}))
    image = Image.open(io.BytesIO(png))
    assert (image.format, image.mode, image.size) == ("PNG", "RGBA", (80, 60))
    alpha = image.getchannel("A")
    assert alpha.getpixel((0, 0)) == 0 and alpha.getpixel((40, 30)) == 255


def test_the_rendered_mask_is_a_single_channel_png_of_the_input_size() -> None:
    png = render_result(png_bytes(33, 77), parse_options({"OnlyMask": True}))
    image = Image.open(io.BytesIO(png))
    assert (image.mode, image.size) == ("L", (33, 77))


def test_a_plain_result_keeps_the_whole_input_opaque_and_refuses_a_box_outside_it() -> None:
    assert parse_args(["--render", "plain"]).render == "plain"
    png = render_result(png_bytes(80, 60), parse_options({}), plain=True)
    image = Image.open(io.BytesIO(png))
    assert (image.mode, image.size) == ("RGBA", (80, 60))
    assert image.getchannel("A").getextrema() == (255, 255)
    mask = Image.open(io.BytesIO(render_result(png_bytes(33, 77), parse_options(
        {"OnlyMask": True}), plain=True)))
    assert (mask.mode, mask.size) == ("L", (33, 77))
    with pytest.raises(InvalidInput):
        render_result(png_bytes(20, 20), parse_options({"Box": [0, 0, 50, 50]}), plain=True)


def test_the_servers_connections_have_nagle_switched_off(emulator: EmulatorProcess) -> None:
    assert requests.get(f"{emulator.base_url}/_admin/ping", timeout=10).json()["tcp_nodelay"]


def test_a_server_that_cannot_start_fails_the_fixture_with_its_error_shown() -> None:
    with pytest.raises(RuntimeError, match="fault_drop"):
        EmulatorProcess(extra_args=["--fault-drop", "2"]).start()


def test_a_body_over_the_size_cap_is_refused_with_http_413() -> None:
    with EmulatorProcess(extra_args=["--max-body-bytes", "2000"]) as server:
        small = server.call("ListRunningTasks")
        large = server.call("RemoveBackground", {"RawImage": "A" * 4000})
    assert small.json()["RetCode"] == 0
    assert large.status_code == 413 and large.json()["Message"].startswith("body")


def test_a_restarted_server_answers_on_the_same_port_with_nothing_remembered() -> None:
    with EmulatorProcess() as server:
        url = server.base_url
        server.call("ListRunningTasks")
        server.stop(crash=True)
        with pytest.raises(requests.ConnectionError):
            requests.get(f"{url}/_admin/ping", timeout=5)
        server.restart()
        assert server.base_url == url and server.calls() == []
        assert server.call("ListRunningTasks").json()["RetCode"] == 0
