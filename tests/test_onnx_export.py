"""The ONNX export: a valid model, identical bytes for identical weights, the same bytes that the
onnxruntime backend runs, and the same logits as the PyTorch reference."""

from __future__ import annotations

import hashlib

import numpy as np
import onnx
import pytest
import torch

from cnnbench import backends
from cnnbench.backends.onnxruntime_peer import OnnxRuntimeBackend
from cnnbench.network.architecture import SEED
from cnnbench.network.onnx_export import (
    IR_VERSION,
    OPSET,
    export_onnx,
    onnx_bytes,
    onnx_model,
    save_onnx,
)
from cnnbench.network.torch_model import model_from_weights
from cnnbench.network.weights import WeightsError, load_weights


def test_exported_file_is_valid_and_is_what_the_backend_runs(tmp_path, weights_path):
    path = tmp_path / "model.onnx"
    sha256 = save_onnx(path, load_weights(weights_path, SEED), SEED)
    data = path.read_bytes()
    assert sha256 == hashlib.sha256(data).hexdigest()
    onnx.checker.check_model(str(path), full_check=True)
    model = onnx.load(str(path))
    assert model.ir_version == IR_VERSION
    assert [(o.domain, o.version) for o in model.opset_import] == [("", OPSET)]
    assert [n.op_type for n in model.graph.node] == [
        *["Conv", "Relu"] * 3,
        "Flatten",
        "Gemm",
        "Relu",
        "Gemm",
    ]
    assert backends.load("onnxruntime", weights_path, SEED).model_bytes == data


def test_bytes_deterministic_and_follow_the_weights(init_arrays):
    first = onnx_bytes(init_arrays, SEED)
    assert onnx_bytes({k: v.copy() for k, v in init_arrays.items()}, SEED) == first
    changed = {**init_arrays, "fc2.bias": init_arrays["fc2.bias"] + np.float32(1)}
    assert onnx_bytes(changed, SEED) != first


def test_float64_reference_agreement(init_arrays):
    """ONNX Runtime's logits on random images equal PyTorch float64's to float32 rounding."""
    x = np.random.default_rng(0).random((5, 1, 28, 28), dtype=np.float32)
    peer = OnnxRuntimeBackend(init_arrays, SEED)
    with torch.inference_mode():
        reference = model_from_weights(init_arrays, SEED, torch.float64)(
            torch.from_numpy(x).double()
        )
    np.testing.assert_allclose(peer.predict(x), reference.numpy(), rtol=0, atol=2e-5)


def test_bad_weights_rejected(init_arrays):
    with pytest.raises(WeightsError, match=r"fc1\.weight has shape \(250, 100\)"):
        onnx_model({**init_arrays, "fc1.weight": init_arrays["fc1.weight"][:, :100]}, SEED)


def test_onnxruntime_is_the_only_peer():
    assert {"onnxruntime"} == backends.PEERS
    assert "onnxruntime" in backends.NAMES and backends.REFERENCE != "onnxruntime"


def test_manifest_entry(tmp_path, init_arrays):
    entry = export_onnx(tmp_path / "model.onnx", init_arrays, SEED)
    data = (tmp_path / "model.onnx").read_bytes()
    assert entry["file"] == "model.onnx"
    assert entry["sha256"] == hashlib.sha256(data).hexdigest()
    assert entry["opset"] == 17 and entry["ir_version"] == 8
    assert entry["input"] == {"name": "images", "shape": ["N", 1, 28, 28], "dtype": "float32"}
    assert entry["output"] == {"name": "logits", "shape": ["N", 10], "dtype": "float32"}
