"""Real cutouts for the local API server: GrabCut or an optional U2Net ONNX model, a rembg-style
trimap from the job's options, and guided-filter alpha refinement."""

from emulator.matting.engine import WORKING_SIDE, cutout_alpha, render

__all__ = ["WORKING_SIDE", "cutout_alpha", "render"]
