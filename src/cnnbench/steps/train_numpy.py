"""Train the network in NumPy (hand-written backward pass, Adam as torch computes it), beside PyTorch.

Job input: train_images, train_labels, test_images, test_labels (MNIST), init (the torch
trainer's seeded initial weights, results/model/init.npz). Output: metrics (per epoch, the torch
trainer's columns), steps (per step, both trainers' losses and parameter divergence), weights
(the NumPy-trained weights, npz), manifest (as the torch export's) and summary (JSON: both
trainers' final test accuracy, how many test images they classify alike, the check's worst). Settings: ``train`` (the
torch trainer's section: the run is the same, on ``train_numpy.threads`` threads), ``train_numpy``
(dtype, check_steps, threads), and ``dataset_name``.

First ``check_steps`` steps side by side in float64, each held to loss relative difference
<= 1e-10 and max relative parameter difference <= 1e-9 (the step fails otherwise, after writing
its tables); then the whole configured run in ``train_numpy.dtype``, PyTorch beside it in the same
dtype on the same batches, every step recorded.
"""

from __future__ import annotations

import sys

import numpy as np
import torch

from cnnbench.common.files import atomic_output, write_json, write_rows
from cnnbench.common.job import Job, run_job
from cnnbench.common.runtime import keep_freed_memory, set_threads
from cnnbench.data import load_split, to_model_input
from cnnbench.network.architecture import Architecture, from_dict
from cnnbench.network.manifest import build_manifest, last_epoch_metrics
from cnnbench.network.torch_model import model_from_weights
from cnnbench.network.weights import load_weights, save_weights
from cnnbench.training import numpy_trainer as train_numpy
from cnnbench.training import seeding as train

LOSS_TOLERANCE = 1e-10  # float64 check: |loss numpy - loss torch| / |loss torch|
PARAMETER_TOLERANCE = 1e-9  # float64 check: max over tensors of max|dp| / max|p torch|
STEP_COLUMNS = ("run", *train_numpy.STEP_COLUMNS)
DATA_ROLES = ("train_images", "train_labels", "test_images", "test_labels")


def check_settings(settings: train.TrainSettings, check_steps: int, n_images: int):
    """The run's settings with enough epochs that the float64 check has ``check_steps`` steps."""
    per_epoch = -(-n_images // settings.batch_size)
    epochs = max(settings.epochs, -(-check_steps // per_epoch))
    return train.TrainSettings(**{**settings.__dict__, "epochs": epochs})


def failures(rows: list[dict]) -> list[str]:
    return [
        f"step {row['step']}: loss relative difference {row['loss_relative_difference']:.3g}, "
        f"max relative parameter difference {row['max_relative_parameter_difference']:.3g}"
        for row in rows
        if row["loss_relative_difference"] > LOSS_TOLERANCE
        or row["max_relative_parameter_difference"] > PARAMETER_TOLERANCE
    ]


def compare_predictions(
    result: train_numpy.NumpyRun, architecture: Architecture, test_split
) -> dict:
    """Test accuracy of both trainers' final weights and how often they predict the same class
    (both evaluated by the PyTorch model in float32, so only the weights differ)."""
    x = torch.from_numpy(to_model_input(test_split[0]))
    labels = test_split[1].astype(np.int64)
    with torch.inference_mode():
        numpy_pred = model_from_weights(result.weights, architecture)(x).argmax(1).numpy()
        torch_pred = model_from_weights(result.torch_weights, architecture)(x).argmax(1).numpy()
    return {
        "test_images": len(labels),
        "test_accuracy_numpy": float((numpy_pred == labels).mean()),
        "test_accuracy_torch": float((torch_pred == labels).mean()),
        "same_predictions": int((numpy_pred == torch_pred).sum()),
        "same_predictions_fraction": float((numpy_pred == torch_pred).mean()),
    }


def run(job: Job) -> None:
    config, numpy_config = job.settings["train"], job.settings["train_numpy"]
    set_threads(numpy_config["threads"])  # float32 NumPy weights come out the same at any count
    keep_freed_memory()  # each step's arrays reuse the last step's memory
    settings = train.TrainSettings(
        config["epochs"], config["batch_size"], config["lr"], config["seed"], "cpu", config["limit"]
    )
    dtype = np.dtype(numpy_config["dtype"])
    architecture = from_dict(job.settings["architecture"])
    train_split = load_split(
        job.path("input", "train_images"), job.path("input", "train_labels"), architecture
    )
    test_split = load_split(
        job.path("input", "test_images"), job.path("input", "test_labels"), architecture
    )
    initial = load_weights(job.path("input", "init"), architecture)

    n_images = len(train.training_subset(settings, train_split)[0])
    check_steps = numpy_config["check_steps"]
    print(f"float64 check: {check_steps} steps side by side with PyTorch", file=sys.stderr)
    check = train_numpy.side_by_side(
        check_settings(settings, check_steps, n_images),
        train_split,
        initial,
        architecture,
        np.float64,
        steps=check_steps,
    )
    print(f"the configured run in {dtype.name}, PyTorch beside it", file=sys.stderr)
    result = train_numpy.train_numpy(
        settings, train_split, test_split, initial, architecture, dtype
    )
    rows = [{"run": "check", **row} for row in check]
    rows += [{"run": "training", **row} for row in result.steps]

    write_rows(result.history, train.METRIC_COLUMNS, job.path("output", "metrics"))
    write_rows(rows, STEP_COLUMNS, job.path("output", "steps"))
    weights_path = job.path("output", "weights")
    with atomic_output(weights_path) as temporary:
        sha256 = save_weights(temporary, result.weights, architecture)
    manifest = build_manifest(
        weights_path,
        sha256,
        architecture,
        {**config, "train_numpy": numpy_config},
        last_epoch_metrics(job.path("output", "metrics")),  # no wall time: reproducible bytes
        job.settings["dataset_name"],
        {role: str(job.path("input", role)) for role in DATA_ROLES},
    )
    write_json(manifest, job.path("output", "manifest"), sort_keys=True)

    summary = compare_predictions(result, architecture, test_split)
    summary["check"] = {
        "steps": check_steps,
        "max_loss_relative_difference": max(row["loss_relative_difference"] for row in check),
        "max_relative_parameter_difference": max(
            row["max_relative_parameter_difference"] for row in check
        ),
        "loss_tolerance": LOSS_TOLERANCE,
        "parameter_tolerance": PARAMETER_TOLERANCE,
    }
    summary["dtype"] = dtype.name
    write_json(summary, job.path("output", "summary"))

    worst = max(rows[:check_steps], key=lambda row: row["max_relative_parameter_difference"])
    last = result.history[-1]
    print(
        f"float64 check: worst max relative parameter difference "
        f"{worst['max_relative_parameter_difference']:.2e} (step {worst['step']}); "
        f"{dtype.name} run: test accuracy {last['test_accuracy']:.2%}, final max relative "
        f"parameter difference {result.steps[-1]['max_relative_parameter_difference']:.2e}",
        file=sys.stderr,
    )
    failed = failures(check)
    if failed:
        raise SystemExit(
            f"train_numpy: the float64 check failed at {len(failed)} of {check_steps} steps "
            f"(tolerances: loss {LOSS_TOLERANCE:g}, parameters {PARAMETER_TOLERANCE:g}):\n  "
            + "\n  ".join(failed[:10])
        )


if __name__ == "__main__":
    run_job(run)
