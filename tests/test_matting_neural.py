"""The optional neural engine: a U2Net-shaped ONNX model, when configured, replaces GrabCut.

The models are tiny ones the test builds with `onnx.helper` (input 1x3x320x320, output
1x1x320x320 after a sigmoid), so the expected mask is known exactly.
"""

from __future__ import annotations

import io
import time
from pathlib import Path

import cv2
import numpy as np
import onnx
import pytest
import requests
from onnx import TensorProto, helper, numpy_helper
from PIL import Image

from emulator.matting import cutout_alpha
from emulator.matting.synthetic import make_scene
from picpik.models import RemoveBackgroundOptions
from tests.support.emulator_server import EmulatorProcess, image_data_uri

SIDE = 320


def build_model(path: Path, weights: list[float], bias: float, constant: np.ndarray) -> Path:
    """sigmoid(conv1x1(x; weights, bias) + constant), saved as an ONNX file at `path`."""
    initialisers = [
        numpy_helper.from_array(np.array(weights, np.float32).reshape(1, 3, 1, 1), "W"),
        numpy_helper.from_array(np.array([bias], np.float32), "B"),
        numpy_helper.from_array(constant.astype(np.float32).reshape(1, 1, SIDE, SIDE), "C"),
    ]
    nodes = [
        helper.make_node("Conv", ["input", "W", "B"], ["z"]),
        helper.make_node("Add", ["z", "C"], ["logits"]),
        helper.make_node("Sigmoid", ["logits"], ["saliency"]),
    ]
    graph = helper.make_graph(
        nodes,
        "tiny-u2net",
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, [1, 3, SIDE, SIDE])],
        [helper.make_tensor_value_info("saliency", TensorProto.FLOAT, [1, 1, SIDE, SIDE])],
        initialisers,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    onnx.save(model, str(path))
    return path


def iou(cut: np.ndarray, truth: np.ndarray) -> float:
    return float((cut & truth).sum() / max((cut | truth).sum(), 1))


@pytest.fixture
def left_half_model(tmp_path: Path) -> Path:
    """A model that ignores the image and always says: the subject is the left half."""
    constant = np.full((SIDE, SIDE), -10.0)
    constant[:, : SIDE // 2] = 10.0
    return build_model(tmp_path / "left.onnx", [0.0, 0.0, 0.0], 0.0, constant)


@pytest.fixture
def red_model(tmp_path: Path) -> Path:
    """A model that finds red: the normalised red channel, sharpened by a sigmoid."""
    return build_model(tmp_path / "red.onnx", [4.0, 0.0, 0.0], -4.0, np.zeros((SIDE, SIDE)))


def test_the_configured_model_decides_the_subject_not_grabcut(left_half_model: Path) -> None:
    scene = make_scene(0, width=240, height=180)  # an ellipse in the middle
    alpha = cutout_alpha(scene.rgb, RemoveBackgroundOptions(), model_path=left_half_model)
    left_half = np.zeros(scene.truth.shape, bool)
    left_half[:, :120] = True
    assert iou(alpha > 127, left_half) > 0.9
    assert iou(alpha > 127, scene.truth) < 0.5


def test_the_model_sees_the_image_through_u2net_preprocessing(red_model: Path) -> None:
    rng = np.random.default_rng(7)
    rgb = np.clip(rng.normal(128, 10, (180, 240, 3)), 0, 255).astype(np.uint8)
    red, green = np.zeros((180, 240), np.uint8), np.zeros((180, 240), np.uint8)
    cv2.circle(red, (70, 90), 40, 1, -1)
    cv2.circle(green, (170, 90), 40, 1, -1)
    rgb[red.astype(bool)] = (230, 30, 30)
    rgb[green.astype(bool)] = (30, 230, 30)
    alpha = cutout_alpha(rgb, RemoveBackgroundOptions(), model_path=red_model)
    assert iou(alpha > 127, red.astype(bool)) > 0.85
    assert (alpha[green.astype(bool)] > 127).mean() < 0.02
    # GrabCut alone takes both discs: the difference is the model's doing.
    classical = cutout_alpha(rgb, RemoveBackgroundOptions())
    assert (classical[green.astype(bool)] > 127).mean() > 0.9


def test_the_box_still_bounds_the_models_subject(left_half_model: Path) -> None:
    scene = make_scene(0, width=240, height=180)
    options = RemoveBackgroundOptions(box=(20, 30, 100, 150))
    alpha = cutout_alpha(scene.rgb, options, model_path=left_half_model)
    assert alpha[:, 100:].max() == 0 and alpha[:30].max() == 0
    assert (alpha[40:140, 30:90] == 255).all()


def test_a_configured_path_without_a_file_falls_back_to_grabcut(tmp_path: Path) -> None:
    scene = make_scene(1, width=160, height=120)
    missing = cutout_alpha(scene.rgb, RemoveBackgroundOptions(), model_path=tmp_path / "no.onnx")
    assert np.array_equal(missing, cutout_alpha(scene.rgb, RemoveBackgroundOptions()))


def test_the_local_server_started_with_a_model_path_cuts_out_with_that_model(
    left_half_model: Path,
) -> None:
    with EmulatorProcess(extra_args=["--model-path", str(left_half_model)]) as server:
        answer = server.call("RemoveBackground", {"RawImage": image_data_uri(240, 180)}).json()
        assert answer["RetCode"] == 0, answer
        url = _wait_for_result_url(server, answer["TaskUID"])
        png = requests.get(url, timeout=30).content
    alpha = np.array(Image.open(io.BytesIO(png)).getchannel("A")) > 127
    left_half = np.zeros(alpha.shape, bool)
    left_half[:, :120] = True
    assert iou(alpha, left_half) > 0.9


def _wait_for_result_url(server: EmulatorProcess, task_uid: str) -> str:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        detail = server.call("ListTasksDetails", {"TaskUIDList": [task_uid]}).json()
        entry = detail["TaskDetailList"][0]
        if entry["Status"] == "Finished":
            return str(entry["ImgList"][0])
        time.sleep(0.05)
    raise AssertionError(f"task {task_uid} did not finish")
