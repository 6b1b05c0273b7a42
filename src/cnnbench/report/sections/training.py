"""Section 2: PyTorch's reference training (metrics.csv, the manifest's final metrics)."""

from __future__ import annotations

from typing import Any

from .. import figures, fmt
from ..inputs import Results, nested

LABELS = {
    "epochs": "epochs",
    "batch_size": "batch size",
    "lr": "learning rate",
    "seed": "seed",
    "device": "device",
    "limit": "training images",
    "threads": "threads",
}


def section(results: Results) -> dict[str, Any]:
    metrics = results.metrics
    manifest = results.manifest
    final = manifest.get("final_metrics") or {}
    accuracy = final.get("test_accuracy")
    if accuracy is None and metrics is not None and len(metrics) and "test_accuracy" in metrics:
        accuracy = float(metrics["test_accuracy"].iloc[-1])
    out: dict[str, Any] = {
        "test_accuracy": fmt.percent(accuracy) if accuracy is not None else "–",
        "test_loss": f"{final['test_loss']:.4f}" if final.get("test_loss") is not None else "–",
        "train_loss": f"{final['train_loss']:.4f}" if final.get("train_loss") is not None else "–",
        "config": [],
        "rows": [],
        "figure": None,
        "total_seconds": "–",
    }
    train_config = manifest.get("train_config") or nested(results.config, "train") or {}
    for key, value in train_config.items():
        if key == "limit" and value is None:
            value = "all"
        out["config"].append({"key": LABELS.get(key, key), "value": value})
    if final.get("device"):
        out["config"].append({"key": "trained on", "value": final["device"]})
    if metrics is not None and len(metrics):
        out["rows"] = [
            {
                "epoch": int(row["epoch"]),
                "train_loss": f"{row['train_loss']:.4f}" if "train_loss" in row else "–",
                "test_loss": f"{row['test_loss']:.4f}" if "test_loss" in row else "–",
                "test_accuracy": fmt.percent(row.get("test_accuracy")),
                "seconds": fmt.duration(row.get("seconds")),
            }
            for row in metrics.to_dict("records")
        ]
        if "seconds" in metrics:
            out["total_seconds"] = fmt.duration(float(metrics["seconds"].sum()))
        if {"epoch", "test_accuracy"} <= set(metrics):
            out["figure"] = figures.training_curves(metrics)
    return out
