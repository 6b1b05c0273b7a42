"""Export the trained state_dict to ``weights.npz`` plus a JSON manifest, and prove the round trip.

Job: input checkpoint, metrics and the four dataset files (train_images, train_labels,
test_images, test_labels); output weights, manifest; settings {"train": the config's train
section, "dataset_name": ...}. Runs on 1 thread (torch would otherwise take every core for the
round trip).
"""

from __future__ import annotations

import csv
import platform
import sys
from pathlib import Path

import numpy as np
import torch

from cnnbench import __version__
from cnnbench.data import file_digests, load_split, to_model_input
from cnnbench.files import atomic_output, write_json
from cnnbench.geometry import PARAMETER_SHAPES
from cnnbench.job import Job, run_job
from cnnbench.model import model_from_weights
from cnnbench.runtime import set_threads
from cnnbench.weights import load_weights, save_weights

DATA_ROLES = ("train_images", "train_labels", "test_images", "test_labels")


def state_dict_arrays(checkpoint: str | Path) -> dict[str, np.ndarray]:
    """float32 NumPy copies of a saved state_dict (weights_only: no code runs on load)."""
    state = torch.load(checkpoint, map_location="cpu", weights_only=True)
    return {name: tensor.detach().numpy().astype(np.float32) for name, tensor in state.items()}


def check_round_trip(
    trained: dict[str, np.ndarray], weights_path: Path, images: np.ndarray
) -> None:
    """The npz, loaded into a fresh model, must give the trained model's logits bit for bit."""
    x = torch.from_numpy(to_model_input(images))
    with torch.inference_mode():
        expected = model_from_weights(trained)(x)
        actual = model_from_weights(load_weights(weights_path))(x)
    if not torch.equal(expected, actual):
        difference = (expected - actual).abs().max().item()
        raise RuntimeError(
            f"{weights_path}: logits differ from the trained model's by up to {difference}"
        )


def build_manifest(
    weights_sha256: str,
    train_config: dict,
    final_metrics: dict,
    dataset_name: str,
    data_paths: dict[str, str],
) -> dict:
    return {
        "weights_file": "weights.npz",
        "sha256": weights_sha256,
        "parameters": {
            name: {"shape": list(shape), "dtype": "float32"}
            for name, shape in PARAMETER_SHAPES.items()
        },
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
    return {"epochs": int(final["epoch"])} | {
        key: float(final[key]) for key in ("train_loss", "test_loss", "test_accuracy")
    }


def run(job: Job) -> None:
    set_threads(1)
    data_paths = {role: str(job.path("input", role)) for role in DATA_ROLES}
    trained = state_dict_arrays(job.path("input", "checkpoint"))
    test_images, _ = load_split(data_paths["test_images"], data_paths["test_labels"])
    weights = job.path("output", "weights")
    with atomic_output(weights) as weights_tmp:
        sha256 = save_weights(weights_tmp, trained)
        check_round_trip(trained, weights_tmp, test_images)
        manifest = build_manifest(
            sha256,
            job.settings["train"],
            last_epoch_metrics(job.path("input", "metrics")),
            job.settings["dataset_name"],
            data_paths,
        )
        write_json(manifest, job.path("output", "manifest"), sort_keys=True)
    print(f"wrote {weights} (sha256 {sha256}); logits round-trip exactly", file=sys.stderr)


if __name__ == "__main__":
    run_job(run)
