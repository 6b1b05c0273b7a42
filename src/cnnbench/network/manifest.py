"""The manifest written beside every exported weights file: what the weights are and where they
came from (training config, final metrics, dataset checksums, versions). No wall time, so identical
training gives identical bytes. Read back by ``cnnbench.network.weights.verify_exported``.
"""

from __future__ import annotations

import csv
import importlib.metadata
import platform
from pathlib import Path

import numpy as np
import torch

from cnnbench import __version__
from cnnbench.data import file_digests
from cnnbench.network.architecture import Architecture


def build_manifest(
    weights_path: str | Path,
    weights_sha256: str,
    architecture: Architecture,
    train_config: dict,
    final_metrics: dict,
    dataset_name: str,
    data_paths: dict[str, str],
    onnx: dict | None = None,
) -> dict:
    """The manifest of the weights at ``weights_path``; ``onnx`` describes an exported ONNX
    model of them, where there is one (the torch-trained weights)."""
    return {
        "weights_file": Path(weights_path).name,
        "sha256": weights_sha256,
        "architecture": architecture.to_dict(),
        "parameters": {
            name: {"shape": list(shape), "dtype": "float32"}
            for name, shape in architecture.parameter_shapes.items()
        },
        **({"onnx": onnx} if onnx is not None else {}),
        "train_config": train_config,
        "final_metrics": final_metrics,
        "dataset": {
            "name": dataset_name,
            "files": {
                role: {"file": Path(path).name, **file_digests(path)}
                for role, path in data_paths.items()
            },
        },
        "versions": {
            "python": platform.python_version(),
            "torch": torch.__version__,
            "numpy": np.__version__,
            "onnx": importlib.metadata.version("onnx"),
            "onnxruntime": importlib.metadata.version("onnxruntime"),
            "cnnbench": __version__,
        },
    }


def last_epoch_metrics(metrics_csv: str | Path) -> dict:
    with open(metrics_csv, newline="") as stream:
        rows = list(csv.DictReader(stream))
    if not rows:
        raise ValueError(f"{metrics_csv}: no epochs recorded")
    # Wall time is left out: the manifest must be byte-identical for identical training.
    final = rows[-1]
    return (
        {"epochs": int(final["epoch"])}
        | {key: float(final[key]) for key in ("train_loss", "test_loss", "test_accuracy")}
        | ({"device": final["device"]} if "device" in final else {})  # PyTorch's training
    )
