"""Section 2b: the same training in NumPy beside PyTorch (results/training_numpy/*)."""

from __future__ import annotations

from typing import Any

from .. import figures, fmt
from ..inputs import Results, nested

PARAMETER_TOLERANCE = 1e-9  # the float64 check's (cnnbench.steps.train_numpy)


def section(results: Results) -> dict[str, Any]:
    metrics, steps, summary = (
        results.training_numpy_metrics,
        results.training_numpy_steps,
        results.training_numpy_summary,
    )
    out: dict[str, Any] = {"present": metrics is not None and len(metrics) > 0}
    if not out["present"]:
        return out
    check = summary.get("check") or {}
    same = summary.get("same_predictions")
    images = summary.get("test_images")
    out |= {
        "dtype": summary.get("dtype", "–"),
        "accuracy_numpy": fmt.percent(summary.get("test_accuracy_numpy")),
        "accuracy_torch": fmt.percent(summary.get("test_accuracy_torch")),
        "accuracy_gap_pp": (
            f"{abs(summary['test_accuracy_numpy'] - summary['test_accuracy_torch']) * 100:.2f}"
            if {"test_accuracy_numpy", "test_accuracy_torch"} <= set(summary)
            else "–"
        ),
        "same": fmt.integer(same),
        "images": fmt.integer(images),
        "same_fraction": fmt.percent(summary.get("same_predictions_fraction")),
        "check_steps": fmt.integer(check.get("steps")),
        "check_loss": fmt.scientific(check.get("max_loss_relative_difference")),
        "check_parameters": fmt.scientific(check.get("max_relative_parameter_difference")),
        "check_passed": check.get("max_relative_parameter_difference", 1.0)
        <= check.get("parameter_tolerance", PARAMETER_TOLERANCE)
        and check.get("max_loss_relative_difference", 1.0) <= check.get("loss_tolerance", 0.0),
        "numpy_threads": nested(results.config, "train_numpy", "threads"),
        "torch_threads": nested(results.config, "train", "threads"),
        "final_divergence": "–",
        "overlay": None,
        "divergence": None,
        "epochs": [],
    }
    torch_metrics = results.metrics
    torch_seconds = (
        dict(zip(torch_metrics["epoch"], torch_metrics["seconds"], strict=True))
        if torch_metrics is not None and "seconds" in torch_metrics
        else {}
    )
    out["epochs"] = [
        {
            "epoch": int(row["epoch"]),
            "test_accuracy": fmt.percent(row["test_accuracy"]),
            "numpy_seconds": fmt.duration(row["seconds"]),
            "torch_seconds": fmt.duration(torch_seconds.get(row["epoch"])),
            "ratio": (
                f"{row['seconds'] / torch_seconds[row['epoch']]:.2f}×"
                if torch_seconds.get(row["epoch"])
                else "–"
            ),
        }
        for row in metrics.to_dict("records")
    ]
    if torch_metrics is not None and len(torch_metrics):
        out["overlay"] = figures.training_overlay(torch_metrics, metrics)
    if steps is not None and len(steps):
        training = steps[steps["run"] == "training"]
        if len(training):
            out["final_divergence"] = fmt.scientific(
                training["max_relative_parameter_difference"].iloc[-1]
            )
        out["divergence"] = figures.step_divergence(steps, PARAMETER_TOLERANCE)
    return out
