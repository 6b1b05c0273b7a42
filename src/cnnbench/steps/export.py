"""Export the trained state_dict to ``weights.npz`` and ``model.onnx`` plus a JSON manifest, and
prove the round trips.

Job: input checkpoint, metrics and the four dataset files (train_images, train_labels,
test_images, test_labels); output weights, onnx, manifest; settings {"train": the config's train
section, "dataset_name": ..., "architecture": the network's record}. Runs on 1 thread (torch would otherwise take every core for the
round trip).
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import torch

from cnnbench.common.files import atomic_output, write_json
from cnnbench.common.job import Job, run_job
from cnnbench.common.runtime import set_threads
from cnnbench.data import load_split, to_model_input
from cnnbench.network.architecture import Architecture, from_dict
from cnnbench.network.manifest import build_manifest, last_epoch_metrics
from cnnbench.network.onnx_export import export_onnx
from cnnbench.network.torch_model import model_from_weights
from cnnbench.network.weights import load_weights, save_weights

DATA_ROLES = ("train_images", "train_labels", "test_images", "test_labels")


def state_dict_arrays(checkpoint: str | Path) -> dict[str, np.ndarray]:
    """float32 NumPy copies of a saved state_dict (weights_only: no code runs on load)."""
    state = torch.load(checkpoint, map_location="cpu", weights_only=True)
    return {name: tensor.detach().numpy().astype(np.float32) for name, tensor in state.items()}


def check_round_trip(
    trained: dict[str, np.ndarray],
    architecture: Architecture,
    weights_path: Path,
    images: np.ndarray,
) -> None:
    """The npz, loaded into a fresh model, must give the trained model's logits bit for bit."""
    x = torch.from_numpy(to_model_input(images))
    with torch.inference_mode():
        expected = model_from_weights(trained, architecture)(x)
        actual = model_from_weights(load_weights(weights_path, architecture), architecture)(x)
    if not torch.equal(expected, actual):
        difference = (expected - actual).abs().max().item()
        raise RuntimeError(
            f"{weights_path}: logits differ from the trained model's by up to {difference}"
        )


def check_onnx(
    trained: dict[str, np.ndarray], architecture: Architecture, onnx_path: Path, images: np.ndarray
) -> float:
    """ONNX Runtime on the written file must give the trained model's logits to float32 rounding
    (different summation orders): the largest difference, at most 1e-5 of the largest logit."""
    import onnxruntime

    from cnnbench.backends.onnxruntime_peer import session_options
    from cnnbench.network.onnx_export import INPUT_NAME, OUTPUT_NAME

    x = to_model_input(images)
    with torch.inference_mode():
        expected = model_from_weights(trained, architecture)(torch.from_numpy(x)).numpy()
    session = onnxruntime.InferenceSession(
        str(onnx_path), sess_options=session_options(), providers=["CPUExecutionProvider"]
    )
    (actual,) = session.run([OUTPUT_NAME], {INPUT_NAME: x})
    difference = float(np.abs(actual - expected).max())
    if not difference <= 1e-5 * max(1.0, float(np.abs(expected).max())):
        raise RuntimeError(
            f"{onnx_path}: ONNX Runtime's logits differ from torch's by {difference}"
        )
    return difference


def run(job: Job) -> None:
    set_threads(1)
    architecture = from_dict(job.settings["architecture"])
    data_paths = {role: str(job.path("input", role)) for role in DATA_ROLES}
    trained = state_dict_arrays(job.path("input", "checkpoint"))
    test_images, _ = load_split(data_paths["test_images"], data_paths["test_labels"], architecture)
    weights, onnx_path = job.path("output", "weights"), job.path("output", "onnx")
    with atomic_output(weights) as weights_tmp, atomic_output(onnx_path) as onnx_tmp:
        sha256 = save_weights(weights_tmp, trained, architecture)
        check_round_trip(trained, architecture, weights_tmp, test_images)
        onnx_entry = {**export_onnx(onnx_tmp, trained, architecture), "file": onnx_path.name}
        onnx_difference = check_onnx(trained, architecture, onnx_tmp, test_images[:1000])
        manifest = build_manifest(
            weights,
            sha256,
            architecture,
            job.settings["train"],
            last_epoch_metrics(job.path("input", "metrics")),
            job.settings["dataset_name"],
            data_paths,
            onnx=onnx_entry,
        )
        write_json(manifest, job.path("output", "manifest"), sort_keys=True)
    print(f"wrote {weights} (sha256 {sha256}); logits round-trip exactly", file=sys.stderr)
    print(
        f"wrote {onnx_path} (sha256 {onnx_entry['sha256']}, opset {onnx_entry['opset']}); "
        f"ONNX Runtime's logits within {onnx_difference:.2g} of torch's on 1000 test images",
        file=sys.stderr,
    )


if __name__ == "__main__":
    run_job(run)
