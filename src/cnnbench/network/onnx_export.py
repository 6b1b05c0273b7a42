"""The network as an ONNX model, built directly from the weight arrays (no torch exporter).

The graph is written node by node with ``onnx.helper`` from ``cnnbench.network.architecture`` and the
``weights.npz`` arrays: Conv + Relu, MaxPool or AveragePool per feature layer, Flatten, then
Gemm (+ Relu but for the output layer) per linear layer. Building it here
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
from cnnbench.network.architecture import AVGPOOL, CONV, Architecture, Layer
from cnnbench.network.weights import check_parameters

if TYPE_CHECKING:
    import onnx

OPSET = 17  # the ONNX operator set the graph is written for (Conv, pools, Relu, Flatten, Gemm)
IR_VERSION = 8  # the IR version that goes with opset 17
INPUT_NAME = "images"  # float32 (N, C, H, W)
OUTPUT_NAME = "logits"  # float32 (N, classes)
BATCH_DIM = "N"


def _window_node(helper, layer: Layer, source: str, output: str):
    """The Conv, MaxPool or AveragePool node of a feature layer."""
    window = {
        "kernel_shape": list(layer.kernel),
        "strides": [layer.stride, layer.stride],
        "pads": [layer.padding] * 4,
    }
    if layer.kind == CONV:
        inputs = [source, f"{layer.name}.weight", f"{layer.name}.bias"]
        return helper.make_node("Conv", inputs, [output], name=output, **window)
    if layer.kind == AVGPOOL:  # padded zeros counted, as torch.nn.AvgPool2d does by default
        return helper.make_node(
            "AveragePool", [source], [output], name=output, count_include_pad=1, **window
        )
    return helper.make_node("MaxPool", [source], [output], name=output, **window)


def onnx_model(arrays: dict[str, np.ndarray], architecture: Architecture) -> onnx.ModelProto:
    """The network holding ``arrays`` (``cnnbench.network.weights`` layouts) as a checked ONNX model."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    check_parameters(arrays, architecture, source="weights")
    initializers = [
        numpy_helper.from_array(np.ascontiguousarray(arrays[name], dtype=np.float32), name)
        for name in architecture.parameter_shapes
    ]
    nodes = []
    current = INPUT_NAME
    for layer in architecture.feature_layers:
        # Node and value names: "conv1.conv" then its ReLU "conv1"; a pool's "pool1".
        output = f"{layer.name}.{layer.kind}" if layer.relu else layer.name
        nodes.append(_window_node(helper, layer, current, output))
        if layer.relu:
            nodes.append(
                helper.make_node("Relu", [output], [layer.name], name=f"{layer.name}.relu")
            )
        current = layer.name
    nodes.append(helper.make_node("Flatten", [current], ["flatten"], name="flatten", axis=1))
    current = "flatten"
    for layer in architecture.linear_layers:
        gemm_out = f"{layer.name}.gemm" if layer.relu else OUTPUT_NAME
        nodes.append(
            helper.make_node(
                "Gemm",
                [current, f"{layer.name}.weight", f"{layer.name}.bias"],
                [gemm_out],
                name=f"{layer.name}.gemm",
                transB=1,
            )
        )
        if layer.relu:
            nodes.append(
                helper.make_node("Relu", [gemm_out], [layer.name], name=f"{layer.name}.relu")
            )
        current = layer.name
    graph = helper.make_graph(
        nodes,
        "cnnbench",
        inputs=[
            helper.make_tensor_value_info(
                INPUT_NAME, TensorProto.FLOAT, [BATCH_DIM, *architecture.input_shape]
            )
        ],
        outputs=[
            helper.make_tensor_value_info(
                OUTPUT_NAME, TensorProto.FLOAT, [BATCH_DIM, architecture.classes]
            )
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


def onnx_bytes(arrays: dict[str, np.ndarray], architecture: Architecture) -> bytes:
    """The serialized model: identical bytes for identical arrays."""
    return onnx_model(arrays, architecture).SerializeToString(deterministic=True)


def save_onnx(path: str | Path, arrays: dict[str, np.ndarray], architecture: Architecture) -> str:
    """Write the model to ``path``, re-check the written file with onnx.checker; return its sha256."""
    import onnx

    data = onnx_bytes(arrays, architecture)
    Path(path).write_bytes(data)
    onnx.checker.check_model(str(path), full_check=True)
    return hashlib.sha256(data).hexdigest()


def export_onnx(
    path: str | Path, arrays: dict[str, np.ndarray], architecture: Architecture
) -> dict:
    """Write ``model.onnx`` for ``arrays``; return its entry for the model manifest (``onnx``)."""
    import onnx

    return {
        "file": Path(path).name,
        "sha256": save_onnx(path, arrays, architecture),
        "opset": OPSET,
        "ir_version": IR_VERSION,
        "built_with": f"cnnbench.network.onnx_export (onnx.helper, onnx {onnx.__version__})",
        "input": {
            "name": INPUT_NAME,
            "shape": [BATCH_DIM, *architecture.input_shape],
            "dtype": "float32",
        },
        "output": {
            "name": OUTPUT_NAME,
            "shape": [BATCH_DIM, architecture.classes],
            "dtype": "float32",
        },
    }
