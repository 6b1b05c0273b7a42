"""Export the trained state_dict to ``weights.npz`` plus a JSON manifest, and prove the round trip.

    python -m cnnbench.export --checkpoint results/model/checkpoint.pt \
        --metrics results/training/metrics.csv --train-config '{"epochs": 5, ...}' \
        --dataset-name MNIST --data train_images=PATH ... --weights results/model/weights.npz \
        --manifest results/model/manifest.json
"""

from __future__ import annotations

import argparse
import csv
import json
import platform
import sys
from pathlib import Path

import numpy as np
import torch

from cnnbench import __version__
from cnnbench.data import file_digests, load_split, to_model_input
from cnnbench.model import model_from_weights
from cnnbench.runtime import atomic_output, set_threads
from cnnbench.geometry import PARAMETER_SHAPES
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


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="python -m cnnbench.export", description=__doc__.splitlines()[0]
    )
    parser.add_argument("--checkpoint", required=True)
    parser.add_argument("--metrics", required=True)
    parser.add_argument("--train-config", required=True, type=json.loads, help="JSON object")
    parser.add_argument("--dataset-name", required=True)
    parser.add_argument(
        "--data",
        required=True,
        nargs=4,
        metavar="ROLE=PATH",
        help=f"one per role: {', '.join(DATA_ROLES)}",
    )
    parser.add_argument("--weights", required=True, help="output .npz")
    parser.add_argument("--manifest", required=True, help="output .json")
    # the rule declares one thread; torch would otherwise take every core for the round trip
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args(argv)
    set_threads(args.threads)

    data_paths = dict(item.split("=", 1) for item in args.data)
    if sorted(data_paths) != sorted(DATA_ROLES):
        parser.error(f"--data needs exactly the roles {', '.join(DATA_ROLES)}")
    trained = state_dict_arrays(args.checkpoint)
    test_images, _ = load_split(data_paths["test_images"], data_paths["test_labels"])
    with atomic_output(args.weights) as weights_tmp, atomic_output(args.manifest) as manifest_tmp:
        sha256 = save_weights(weights_tmp, trained)
        check_round_trip(trained, weights_tmp, test_images)
        manifest = build_manifest(
            sha256,
            args.train_config,
            last_epoch_metrics(args.metrics),
            args.dataset_name,
            data_paths,
        )
        manifest_tmp.write_text(json.dumps(manifest, indent=2, sort_keys=True) + "\n")
    print(f"wrote {args.weights} (sha256 {sha256}); logits round-trip exactly", file=sys.stderr)


if __name__ == "__main__":
    main()
