"""The optional neural segmenter: a U2Net-family ONNX model run with onnxruntime.

Preprocessing is U2Net's (as rembg does it): resize to the model's input size (320x320 for
U2Net), scale by the image's maximum, normalise with the ImageNet mean and std; the first
output's first channel is the saliency map, min-max normalised and resized back.
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

__all__ = ["model_available", "saliency"]

_MEAN = np.array([0.485, 0.456, 0.406], np.float32)
_STD = np.array([0.229, 0.224, 0.225], np.float32)
_DEFAULT_SIDE = 320


def model_available(model_path: Path | None) -> bool:
    """True when a model file is configured and present; otherwise the classical engine runs."""
    return model_path is not None and model_path.is_file()


@lru_cache(maxsize=2)
def _session(path: str, _mtime_ns: int) -> Any:
    # Imported here: onnxruntime is an optional dependency (extra "neural").
    import onnxruntime

    options = onnxruntime.SessionOptions()
    options.log_severity_level = 3
    return onnxruntime.InferenceSession(path, options, providers=["CPUExecutionProvider"])


def _input_size(session: Any) -> tuple[int, int]:
    """(width, height) the model wants; 320x320 when its input shape is dynamic."""
    shape = session.get_inputs()[0].shape
    height, width = shape[2], shape[3]
    if isinstance(height, int) and isinstance(width, int):
        return width, height
    return _DEFAULT_SIDE, _DEFAULT_SIDE


def saliency(rgb: np.ndarray, model_path: Path) -> np.ndarray:
    """The model's uint8 saliency map (255 = subject) at the size of `rgb`."""
    session = _session(str(model_path), model_path.stat().st_mtime_ns)
    size = _input_size(session)
    resized = np.asarray(Image.fromarray(rgb).resize(size, Image.Resampling.LANCZOS))
    scaled = resized.astype(np.float32) / max(float(resized.max()), 1e-6)
    tensor = ((scaled - _MEAN) / _STD).transpose(2, 0, 1)[None].astype(np.float32)
    output = np.asarray(session.run(None, {session.get_inputs()[0].name: tensor})[0], np.float32)
    # U2Net's is 1x1xHxW; take the first map whatever the leading axes.
    prediction = output.reshape(-1, *output.shape[-2:])[0]
    low, high = float(prediction.min()), float(prediction.max())
    prediction = (prediction - low) / max(high - low, 1e-6)
    as_image = Image.fromarray(np.rint(prediction * 255).astype(np.uint8), "L")
    back = as_image.resize((rgb.shape[1], rgb.shape[0]), Image.Resampling.LANCZOS)
    return np.asarray(back)
