"""The network as an ONNX model, built directly from the weight arrays (no torch exporter).

The graph is written node by node with ``onnx.helper`` from ``cnnbench.network.architecture`` and the
``weights.npz`` arrays: Conv + Relu three times, Flatten, Gemm + Relu, Gemm. Building it here
instead of tracing the PyTorch model keeps the file byte-identical for identical weights (fixed
opset and IR version, fixed names, no exporter version or timestamps in it) and keeps torch out of
the onnxruntime backend, which builds the same bytes in memory at load.

``onnx`` is imported lazily: only the export step and the onnxruntime backend need it.
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from cnnbench import __version__
from cnnbench.network.architecture import (
    CONV_LAYERS,
    CONV_PADDING,
    CONV_STRIDE,
    INPUT_SHAPE,
    LINEAR_LAYERS,
    NUM_CLASSES,
    PARAMETER_SHAPES,
)
from cnnbench.network.weights import check_parameters

if TYPE_CHECKING:
    import onnx

OPSET = 17  # the ONNX operator set the graph is written for (Conv, Relu, Flatten, Gemm)
IR_VERSION = 8  # the IR version that goes with opset 17
INPUT_NAME = "images"  # float32 (N, 1, 28, 28)
OUTPUT_NAME = "logits"  # float32 (N, 10)
BATCH_DIM = "N"


def onnx_model(arrays: dict[str, np.ndarray]) -> onnx.ModelProto:
    """The network holding ``arrays`` (``cnnbench.network.weights`` layouts) as a checked ONNX model."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    check_parameters(arrays, source="weights")
    initializers = [
        numpy_helper.from_array(np.ascontiguousarray(arrays[name], dtype=np.float32), name)
        for name in PARAMETER_SHAPES
    ]
    nodes = []
    current = INPUT_NAME
    for layer in CONV_LAYERS:
        kh, kw = PARAMETER_SHAPES[f"{layer}.weight"][2:]
        nodes.append(
            helper.make_node(
                "Conv",
                [current, f"{layer}.weight", f"{layer}.bias"],
                [f"{layer}.conv"],
                name=f"{layer}.conv",
                kernel_shape=[kh, kw],
                strides=[CONV_STRIDE, CONV_STRIDE],
                pads=[CONV_PADDING] * 4,
            )
        )
        nodes.append(helper.make_node("Relu", [f"{layer}.conv"], [layer], name=f"{layer}.relu"))
        current = layer
    nodes.append(helper.make_node("Flatten", [current], ["flatten"], name="flatten", axis=1))
    current = "flatten"
    for i, layer in enumerate(LINEAR_LAYERS):
        last = i == len(LINEAR_LAYERS) - 1
        gemm_out = OUTPUT_NAME if last else f"{layer}.gemm"
        nodes.append(
            helper.make_node(
                "Gemm",
                [current, f"{layer}.weight", f"{layer}.bias"],
                [gemm_out],
                name=f"{layer}.gemm",
                transB=1,
            )
        )
        if not last:
            nodes.append(helper.make_node("Relu", [gemm_out], [layer], name=f"{layer}.relu"))
        current = layer
    graph = helper.make_graph(
        nodes,
        "cnnbench",
        inputs=[
            helper.make_tensor_value_info(INPUT_NAME, TensorProto.FLOAT, [BATCH_DIM, *INPUT_SHAPE])
        ],
        outputs=[
            helper.make_tensor_value_info(OUTPUT_NAME, TensorProto.FLOAT, [BATCH_DIM, NUM_CLASSES])
        ],
        initializer=initializers,
    )
    model = helper.make_model(
        graph,
        opset_imports=[helper.make_opsetid("", OPSET)],
        ir_version=IR_VERSION,
        producer_name="cnnbench",
        producer_version=__version__,
    )
    onnx.checker.check_model(model, full_check=True)
    return model


def onnx_bytes(arrays: dict[str, np.ndarray]) -> bytes:
    """The serialized model: identical bytes for identical arrays."""
    return onnx_model(arrays).SerializeToString(deterministic=True)


def save_onnx(path: str | Path, arrays: dict[str, np.ndarray]) -> str:
    """Write the model to ``path``, re-check the written file with onnx.checker; return its sha256."""
    import onnx

    data = onnx_bytes(arrays)
    Path(path).write_bytes(data)
    onnx.checker.check_model(str(path), full_check=True)
    return hashlib.sha256(data).hexdigest()


def export_onnx(path: str | Path, arrays: dict[str, np.ndarray]) -> dict:
    """Write ``model.onnx`` for ``arrays``; return its entry for the model manifest (``onnx``)."""
    import onnx

    return {
        "file": Path(path).name,
        "sha256": save_onnx(path, arrays),
        "opset": OPSET,
        "ir_version": IR_VERSION,
        "built_with": f"cnnbench.network.onnx_export (onnx.helper, onnx {onnx.__version__})",
        "input": {"name": INPUT_NAME, "shape": [BATCH_DIM, *INPUT_SHAPE], "dtype": "float32"},
        "output": {"name": OUTPUT_NAME, "shape": [BATCH_DIM, NUM_CLASSES], "dtype": "float32"},
    }
