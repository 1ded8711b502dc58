"""Small ONNX models built with onnx.helper (no torch) and numpy references for SDK tests.

The NIP is conv3x3 -> ReLU -> conv3x3 -> DepthToSpace(2, CRD), i.e. torch's PixelShuffle:
stack radius 2, so receptive field R = 2 * 2 + 1 = 5 output pixels. The pooled variant adds a
MaxPool(2)/nearest-Resize branch (stack radius 3, R = 7), so its inputs must be multiples of 2
(``size_multiple``).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from rawproof.models import encode_metadata, file_sha256

__all__ = ["NipWeights", "make_nip", "make_fan", "nip_reference", "write_model"]


class NipWeights:
    """Random weights of the test NIP (float32)."""

    def __init__(self, seed: int = 0, hidden: int = 8) -> None:
        rng = np.random.default_rng(seed)
        self.w1 = rng.normal(0, 0.3, (hidden, 4, 3, 3)).astype(np.float32)
        self.b1 = rng.normal(0, 0.1, hidden).astype(np.float32)
        self.w2 = rng.normal(0, 0.2, (12, hidden, 3, 3)).astype(np.float32)
        self.b2 = (0.4 + rng.normal(0, 0.1, 12)).astype(np.float32)


def _conv_ref(x: np.ndarray, w: np.ndarray, b: np.ndarray) -> np.ndarray:
    """3x3 cross-correlation with zero padding 1, numpy. x: C x h x w -> O x h x w (float64)."""
    xp = np.pad(x.astype(np.float64), ((0, 0), (1, 1), (1, 1)))
    win = np.lib.stride_tricks.sliding_window_view(xp, (3, 3), axis=(1, 2))  # C x h x w x 3 x 3
    return np.einsum("chwij,ocij->ohw", win, w.astype(np.float64)) + b[:, None, None]


def nip_reference(stack: np.ndarray, wts: NipWeights) -> np.ndarray:
    """numpy reference of the plain test NIP: 4 x h x w -> 3 x 2h x 2w, float64 (unclipped)."""
    y = _conv_ref(np.maximum(_conv_ref(stack, wts.w1, wts.b1), 0), wts.w2, wts.b2)
    _, h, w = y.shape
    # DepthToSpace CRD == PixelShuffle: out[c, 2y+i, 2x+j] = in[4c + 2i + j, y, x]
    return y.reshape(3, 2, 2, h, w).transpose(0, 3, 1, 4, 2).reshape(3, 2 * h, 2 * w)


def make_nip(wts: NipWeights, *, input_name: str = "rggb", pooled: bool = False) -> onnx.ModelProto:
    """The test NIP as an ONNX model with dynamic N, h, w (opset 17)."""
    inits = [numpy_helper.from_array(a, n) for a, n in ((wts.w1, "w1"), (wts.b1, "b1"), (wts.w2, "w2"), (wts.b2, "b2"))]
    nodes = [
        helper.make_node("Conv", [input_name, "w1", "b1"], ["c1"], pads=[1, 1, 1, 1]),
        helper.make_node("Relu", ["c1"], ["r1"]),
    ]
    feat = "r1"
    if pooled:
        inits.append(numpy_helper.from_array(np.array([1, 1, 2, 2], np.float32), "scales"))
        nodes += [
            helper.make_node("MaxPool", ["r1"], ["p1"], kernel_shape=[2, 2], strides=[2, 2]),
            helper.make_node("Resize", ["p1", "", "scales"], ["u1"], mode="nearest"),
            helper.make_node("Add", ["r1", "u1"], ["a1"]),
        ]
        feat = "a1"
    nodes += [
        helper.make_node("Conv", [feat, "w2", "b2"], ["c2"], pads=[1, 1, 1, 1]),
        helper.make_node("DepthToSpace", ["c2"], ["rgb"], blocksize=2, mode="CRD"),
    ]
    graph = helper.make_graph(
        nodes, "test_nip",
        [helper.make_tensor_value_info(input_name, TensorProto.FLOAT, ["N", 4, "h", "w"])],
        [helper.make_tensor_value_info("rgb", TensorProto.FLOAT, ["N", 3, "2h", "2w"])],
        inits,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    return model


def make_fan(n_classes: int = 5, seed: int = 0) -> onnx.ModelProto:
    """A test FAN: conv3x3 -> GlobalAveragePool -> Flatten -> Gemm, rgb N x 3 x H x W -> logits N x C."""
    rng = np.random.default_rng(seed)
    inits = [
        numpy_helper.from_array(rng.normal(0, 0.3, (8, 3, 3, 3)).astype(np.float32), "w"),
        numpy_helper.from_array(rng.normal(0, 0.3, (n_classes, 8)).astype(np.float32), "g"),
    ]
    nodes = [
        helper.make_node("Conv", ["rgb", "w"], ["c"], pads=[1, 1, 1, 1]),
        helper.make_node("GlobalAveragePool", ["c"], ["p"]),
        helper.make_node("Flatten", ["p"], ["f"]),
        helper.make_node("Gemm", ["f", "g"], ["logits"], transB=1),
    ]
    graph = helper.make_graph(
        nodes, "test_fan",
        [helper.make_tensor_value_info("rgb", TensorProto.FLOAT, ["N", 3, "H", "W"])],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["N", n_classes])],
        inits,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    return model


def write_model(model: onnx.ModelProto, path: Path, metadata: dict[str, Any]) -> Path:
    """Save ``model`` with ``metadata`` in metadata_props and the sibling JSON (with sha256)."""
    full = {
        "architecture": "test", "input_layout": "test", "trained_on": "none", "config": {},
        "git_commit": "none", "metrics": {}, **metadata,
    }
    del model.metadata_props[:]
    for k, v in encode_metadata(full).items():
        model.metadata_props.add(key=k, value=v)
    onnx.checker.check_model(model)
    path.parent.mkdir(parents=True, exist_ok=True)
    onnx.save_model(model, str(path))
    path.with_suffix(".json").write_text(json.dumps({**full, "sha256": file_sha256(path)}))
    return path
