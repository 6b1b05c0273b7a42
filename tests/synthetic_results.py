"""Small synthetic result tables in the pipeline's formats (docs/CONTRACT.md), for report tests."""

from __future__ import annotations

import gzip
import hashlib
import json
import os
from itertools import combinations
from pathlib import Path

import numpy as np
import pandas as pd
import yaml

from cnnbench.network.architecture import SEED
from cnnbench.steps.agreement import AGREEMENT_COLUMNS, DISAGREEMENT_COLUMNS

ALL_BACKENDS = ["torch", "onnxruntime", "numpy_im2col", "numba_loops", "numpy_loops"]
MEDIAN_LATENCY = {
    "torch": 2.1e-4,
    "onnxruntime": 1.0e-4,  # the production peer: faster than every hand-written backend
    "numpy_im2col": 1.4e-3,
    "numba_loops": 7.5e-4,
    "numpy_loops": 0.23,
}
# spread of the latencies (sigma of their log): numba_loops is unstable (IQR / median ~ 34 %)
LATENCY_SPREAD = {name: 0.25 if name == "numba_loops" else 0.03 for name in MEDIAN_LATENCY}
TEST_IMAGES = 250  # the synthetic "test set"; backends run on the first ``images`` of them
DISAGREE_INDEX = 7  # numpy_loops flips this near-tie image
BENCH_START = 1_700_000_000.0


# docs/CONTRACT.md's columns, written out here so the tests check the format, not a constant
def named_inputs(root: Path) -> tuple[dict, dict]:
    """The report's named inputs for ``write_synthetic_results(root)``, as the report rule names
    them, and the config; absent files (a test may delete some) stay named."""
    config = yaml.safe_load((root / "config.yaml").read_text())
    results = root / "results"
    backends = config["inference"]["backends"]
    inputs = {
        "metrics": results / "training" / "metrics.csv",
        "manifest": results / "model" / "manifest.json",
        "weights": results / "model" / "weights.npz",
        "data": [results / "data" / f["file"] for f in config["dataset"]["files"].values()],
        "gradcheck": results / "gradcheck.csv",
        "inference": [
            results / "inference" / f"{name}.{ext}" for name in backends for ext in ("csv", "json")
        ],
        "throughput": results / "throughput.csv",
        "bench_processes": results / "bench_processes.json",
        "machine": results / "machine.json",
        "layers": results / "layers.csv",
        "agreement": results / "agreement.csv",
        "accuracy": results / "accuracy.csv",
        "disagreements": results / "disagreements.csv",
        "environment": results / "environment.json",
        "benchmarks": [results / "benchmarks" / f"{name}.tsv" for name, *_ in _schedule(backends)],
    }
    for name in ("metrics", "steps", "summary"):
        path = results / "training_numpy" / f"{name}.{'json' if name == 'summary' else 'csv'}"
        if path.exists():
            inputs[f"training_numpy_{name}"] = path
    if (results / "worked_example_torch.json").exists():
        inputs["worked_example"] = results / "worked_example_torch.json"
    as_text = {
        key: [str(p) for p in value] if isinstance(value, list) else str(value)
        for key, value in inputs.items()
    }
    return as_text, config


def _schedule(backends: list[str]) -> list[tuple[str, float, float]]:
    """Benchmarks: (name, start offset, seconds); two inference jobs overlap (ran in parallel)."""
    return [
        ("download_test_images", 0, 3.2),
        ("train", 3.5, 36.5),
        ("export", 40.2, 1.1),
        ("gradcheck", 41.5, 8.0),
    ] + [
        (f"infer_{name}_0", 50.0 + 2 * i, 5.0 + 60 * (name == "numpy_loops"))
        for i, name in enumerate(backends)
    ]


# ---------------------------------------------------------------------------- synthetic results


def _idx(path: Path, array: np.ndarray) -> None:
    magic = 2051 if array.ndim == 3 else 2049
    header = magic.to_bytes(4, "big") + b"".join(int(n).to_bytes(4, "big") for n in array.shape)
    with gzip.GzipFile(path, "wb", mtime=0) as stream:
        stream.write(header + array.astype(np.uint8).tobytes())


def _digests(path: Path) -> dict[str, str]:
    data = path.read_bytes()
    return {"md5": hashlib.md5(data).hexdigest(), "sha256": hashlib.sha256(data).hexdigest()}


def write_synthetic_results(
    root: Path, backends: list[str] = ALL_BACKENDS, images: int = 200, gradcheck_fail: bool = False
) -> Path:
    """A plausible results/ folder (docs/CONTRACT.md) plus config.yaml; returns the config path."""
    rng = np.random.default_rng(0)
    results = root / "results"
    for folder in ("data", "model", "training", "inference", "benchmarks"):
        (results / folder).mkdir(parents=True, exist_ok=True)

    # dataset: blurry blobs as images, checksums recorded in config and manifest
    yy, xx = np.mgrid[:28, :28]
    centres = rng.uniform(8, 20, size=(TEST_IMAGES, 2))
    blobs = 255 * np.exp(
        -((yy - centres[:, :1, None]) ** 2 + (xx - centres[:, 1:, None]) ** 2) / 30
    )
    test_labels = rng.integers(0, 10, TEST_IMAGES)
    files = {
        "train_images": ("train-images-idx3-ubyte.gz", blobs[:40]),
        "train_labels": ("train-labels-idx1-ubyte.gz", test_labels[:40]),
        "test_images": ("t10k-images-idx3-ubyte.gz", blobs),
        "test_labels": ("t10k-labels-idx1-ubyte.gz", test_labels),
    }
    dataset_files = {}
    for role, (name, array) in files.items():
        _idx(results / "data" / name, array)
        dataset_files[role] = {"file": name, **_digests(results / "data" / name)}

    config = {
        "dataset": {
            "name": "MNIST",
            "mirrors": ["https://example.invalid/mnist/"],
            "files": dataset_files,
        },
        "train": {
            "epochs": 3,
            "batch_size": 128,
            "lr": 0.001,
            "seed": 0,
            "device": "cpu",
            "limit": None,
            "threads": 2,
        },
        "train_numpy": {"dtype": "float32", "check_steps": 20, "threads": 1},
        "gradcheck": {"batch_size": 8, "samples": 20, "seed": 0},
        "inference": {
            "backends": list(backends),
            "limit": images,
            "shards": 2,
            "threads": 1,
            "warmup": 10,
            "throughput_batch_sizes": [1, 32, 1000],
        },
    }
    config_path = root / "config.yaml"
    config_path.write_text(yaml.safe_dump(config, sort_keys=False))

    # training
    metrics = pd.DataFrame(
        {
            "epoch": [1, 2, 3],
            "train_loss": [0.4123, 0.1021, 0.0712],
            "test_loss": [0.1502, 0.0811, 0.0654],
            "test_accuracy": [0.9512, 0.9744, 0.9791],
            "seconds": [12.5, 11.9, 12.1],
        }
    )
    metrics.to_csv(results / "training" / "metrics.csv", index=False)
    _write_training_numpy(results, metrics, rng)
    weights = results / "model" / "weights.npz"
    weights.write_bytes(b"synthetic weights")
    manifest = {
        "architecture": SEED.to_dict(),
        "parameters": {
            name: {"shape": list(shape), "dtype": "float32"}
            for name, shape in SEED.parameter_shapes.items()
        },
        "sha256": hashlib.sha256(weights.read_bytes()).hexdigest(),
        "train_config": {
            k: config["train"][k] for k in ("epochs", "batch_size", "lr", "seed", "device", "limit")
        },
        "final_metrics": {
            "test_accuracy": 0.9791,
            "test_loss": 0.0654,
            "train_loss": 0.0712,
            "device": "cuda (NVIDIA H200)",
        },
        "versions": {"python": "3.11.9", "torch": "2.13.0", "numpy": "2.4.6"},
        "dataset": {"name": "MNIST", "files": dataset_files},
    }
    (results / "model" / "manifest.json").write_text(json.dumps(manifest, indent=1))

    # inference: the same logits everywhere up to float32 noise; one near-tie flips in numpy_loops
    labels = test_labels[:images]
    base = rng.normal(0, 2, size=(images, 10))
    base[np.arange(images), labels] += 6
    wrong = rng.choice(images, size=max(images // 20, 1), replace=False)
    base[wrong, (labels[wrong] + 3) % 10] += 9  # confident mistakes
    if images > DISAGREE_INDEX:
        base[DISAGREE_INDEX] = np.arange(10) * 0.1
        base[DISAGREE_INDEX, 4] = base[DISAGREE_INDEX, 9] = 5.0
        base[DISAGREE_INDEX, 4] += 2e-7  # torch picks 4; numpy_loops below picks 9
    tables = {}
    for name in backends:
        logits = base + rng.normal(0, 3e-7, size=base.shape) * (name != "torch")
        if images > DISAGREE_INDEX:
            logits[DISAGREE_INDEX] = base[DISAGREE_INDEX]
            if name == "numpy_loops":
                logits[DISAGREE_INDEX, 9] += 4e-7
        latency = MEDIAN_LATENCY[name] * np.exp(rng.normal(0, LATENCY_SPREAD[name], images))
        table = pd.DataFrame(
            {
                "index": np.arange(images),
                "label": labels,
                "pred": logits.argmax(axis=1),
                "latency_s": latency,
            }
        )
        for k in range(10):
            table[f"logit_{k}"] = logits[:, k].astype(np.float32)
        table.to_csv(results / "inference" / f"{name}.csv", index=False)
        tables[name] = table
        (results / "inference" / f"{name}.json").write_text(
            json.dumps(
                {
                    "backend": name,
                    "images": images,
                    "warmup": 10,
                    "threads": 1,
                    "load_s": 0.05,
                    "compile_s": 2.34 if name == "numba_loops" else None,
                    "shards": 2 if name == "numpy_loops" else 1,
                }
            )
        )

    logit_cols = [f"logit_{k}" for k in range(10)]
    agreement, disagreements = [], []
    for a, b in combinations(backends, 2):
        ta, tb = tables[a], tables[b]
        same = ta["pred"].to_numpy() == tb["pred"].to_numpy()
        diff = np.abs(ta[logit_cols].to_numpy(float) - tb[logit_cols].to_numpy(float)).max()
        agreement.append(
            {
                "backend_a": a,
                "backend_b": b,
                "images": images,
                "agree": int(same.sum()),
                "agree_fraction": same.mean(),
                "max_abs_logit_diff": diff,
            }
        )
        for i in np.flatnonzero(~same):
            margins = [np.diff(np.sort(t[logit_cols].to_numpy(float)[i])[-2:])[0] for t in (ta, tb)]
            disagreements.append(
                {
                    "index": i,
                    "label": labels[i],
                    "backend_a": a,
                    "backend_b": b,
                    "pred_a": ta["pred"][i],
                    "pred_b": tb["pred"][i],
                    "margin_a": margins[0],
                    "margin_b": margins[1],
                }
            )
    pd.DataFrame(
        agreement,
        columns=AGREEMENT_COLUMNS,
    ).to_csv(results / "agreement.csv", index=False)
    pd.DataFrame(
        disagreements,
        columns=DISAGREEMENT_COLUMNS,
    ).to_csv(results / "disagreements.csv", index=False)
    pd.DataFrame(
        [
            {
                "backend": n,
                "images": images,
                "correct": int((t.pred == t.label).sum()),
                "accuracy": float((t.pred == t.label).mean()),
            }
            for n, t in tables.items()
        ]
    ).to_csv(results / "accuracy.csv", index=False)

    rows = []
    for name in backends:
        for size in (1, 32, 1000):
            per_image = MEDIAN_LATENCY[name] / (
                1 + np.log2(size) * (name in ("torch", "numpy_im2col"))
            )
            n = 64 if name.endswith("loops") and size == 1000 else size
            rows.append(
                {
                    "backend": name,
                    "batch_size": size,
                    "images": n,
                    "seconds": per_image * n,
                    "images_per_s": 1 / per_image,
                    "repeats": 3,
                }
            )
    pd.DataFrame(rows).to_csv(results / "throughput.csv", index=False)

    tensors = ["conv1.weight", "conv1.bias", "fc2.weight"]
    grad = pd.DataFrame(
        {
            "tensor": tensors * 2,
            "implementation": ["im2col"] * 3 + ["loops"] * 3,
            "reference": ["torch_float32"] * 3 + ["finite_differences"] * 3,
            "dtype": ["float32"] * 3 + ["float64"] * 3,
            "max_abs_err": [2.1e-7, 3.3e-8, 1.2e-6, 4.0e-9, 1.1e-9, 7.7e-10],
            "max_rel_err": [1.1e-5, 2.0e-6, 3.1e-5, 2.2e-7, 1.0e-7, 5.5e-8],
            "tolerance": [1e-4, 1e-4, 1e-4, 1e-6, 1e-6, 1e-6],
            "passed": [True] * 6,
        }
    )
    if gradcheck_fail:
        grad.loc[4, ["max_rel_err", "passed"]] = [3e-3, False]
    grad.to_csv(results / "gradcheck.csv", index=False)

    (results / "environment.json").write_text(
        json.dumps(
            {
                "cpu_model": "Synthetic CPU @ 3.00GHz",
                "logical_cores": 8,
                "threads": 1,
                "python": "3.11.9",
                "packages": {
                    "numpy": "2.4.6",
                    "torch": "2.13.0",
                    "numba": "0.68.1",
                    "pandas": "3.1.1",
                },
                "blas": [
                    {
                        "user_api": "blas",
                        "internal_api": "openblas",
                        "version": "0.3.30",
                        "num_threads": 1,
                        "threading_layer": "pthreads",
                        "architecture": "Haswell",
                        "prefix": "libscipy_openblas",
                    }
                ],
                "load_average": [0.52, 0.61, 0.7],
                "physical_cores": 4,
                "torch_threads": 1,
                "numba_threads": 1,
                "blas_environment": {},
                "numba_cpu": {
                    "name": "haswell",
                    "features": ["avx", "avx2", "bmi", "bmi2", "fma"] * 12,
                },
                "platform": "Linux-6.1-x86_64",
                "timestamp": "2026-01-01T12:00:00",
            }
        )
    )

    for name, start, seconds in _schedule(backends):
        path = results / "benchmarks" / f"{name}.tsv"
        path.write_text(
            "s\th:m:s\tmax_rss\tmax_vms\tmax_uss\tmax_pss\tio_in\tio_out\tmean_load\tcpu_time\n"
            f"{seconds:.4f}\t0:00:{seconds:05.2f}\t512.3\t900.1\t500.0\t505.5\t1.0\t2.0\t0.97\t{seconds * 0.9:.2f}\n"
        )
        os.utime(path, (BENCH_START + start + seconds, BENCH_START + start + seconds))
    _write_bench_processes(results, backends)
    _write_machine(results)
    write_layers(results, backends, SEED)
    return config_path


# bench_processes.json: each backend's medians (batch 1, batch 250) in three fresh processes.
# numba_loops moves most (its batch-1 median 150-270 us: a spread of 120 / 200 = 60 %).
BENCH_LATENCY = {
    "torch": [2.0e-4, 2.1e-4, 2.2e-4],
    "onnxruntime": [7.3e-5, 7.5e-5, 7.4e-5],
    "numpy_im2col": [1.1e-4, 1.2e-4, 1.15e-4],
    "numba_loops": [1.5e-4, 2.7e-4, 2.0e-4],
    "numpy_loops": [0.12, 0.13, 0.125],
}
BENCH_BATCH = {
    "torch": [6.0e-5, 6.6e-5, 6.3e-5],
    "onnxruntime": [4.9e-5, 5.0e-5, 5.1e-5],
    "numpy_im2col": [6.7e-5, 7.0e-5, 6.8e-5],
    "numba_loops": [1.4e-4, 1.6e-4, 1.5e-4],
    "numpy_loops": [0.12, 0.12, 0.12],
}


def _write_bench_processes(results: Path, backends: list[str]) -> None:
    """The bench's --json summary with --processes 3 (cnnbench.bench.__main__.across_processes)."""
    per_process = [
        {
            "latency": {name: BENCH_LATENCY[name][k] for name in backends},
            "batch": {name: BENCH_BATCH[name][k] for name in backends},
            "batches": {name: 2 if name == "numpy_loops" else 250 for name in backends},
            "load_average": [[0.5, 0.6, 0.7], [0.9, 0.7, 0.7]],
            "floor_s": 5.1e-5,
            "clock": "wall",
        }
        for k in range(3)
    ]
    summary = {
        "processes": 3,
        "clock": "wall",
        "threads": 1,
        "batch_size": 250,
        "per_process": per_process,
    }
    (results / "bench_processes.json").write_text(json.dumps(summary, indent=1))


# machine.json (cnnbench.bench.machine): 32 KiB L1, 1 MiB L2, 32 MiB L3; triad bandwidth falling
# from 140 GB/s in L1 to 16 GB/s in memory; BLAS 96 GFLOP/s, ONNX Runtime 150, numba 30
MACHINE_CACHES = [
    {"level": 1, "type": "Data", "bytes": 32 * 1024},
    {"level": 2, "type": "Unified", "bytes": 1024**2},
    {"level": 3, "type": "Unified", "bytes": 32 * 1024**2},
]
MACHINE_BANDWIDTH = [
    (16 * 1024 * 2**k, gbps)
    for k, gbps in enumerate([140, 130, 90, 89, 91, 90, 78, 79, 80, 72, 29, 21, 16, 15.9])
]


def _write_machine(results: Path) -> None:
    bandwidth = [{"bytes": size, "gb_per_s": gbps} for size, gbps in MACHINE_BANDWIDTH]
    machine = {
        "threads": 1,
        "matmul": {"size": 384, "gflops": 96.0},
        "onnxruntime_matmul": {"size": 384, "gflops": 150.0},
        "numba_dot": {"width": 1024, "gflops": 30.0},
        "peak_gflops": 150.0,
        "caches": MACHINE_CACHES,
        "bandwidth": bandwidth,
        "roofs": {"L1": 140.0, "L2": 91.0, "L3": 80.0, "memory": 16.0},
        "load_average": [[0.4, 0.5, 0.6], [0.5, 0.5, 0.6]],
        "environment": {"cpu_model": "Synthetic CPU @ 3.00GHz", "threads": 1},
    }
    (results / "machine.json").write_text(json.dumps(machine, indent=1))


# layers.csv (cnnbench.steps.layer_times): each layer's share of a backend's time per image;
# the layers add up to LAYER_SUM of the whole forward pass. numba_loops has no rows here: the report copes with a backend left unsplit.
LAYER_SUM = 1.04
LARGE_BATCH = {"numpy_loops": 2}  # the slow backend's sample; the others' is 250


def write_layers(results: Path, backends: list[str], architecture) -> None:
    names = [layer.name for layer in architecture.layers]
    shares = np.linspace(1, 2, len(names)) / np.linspace(1, 2, len(names)).sum()
    rows = []
    for name in backends:
        if name == "numba_loops":
            continue
        for size in (1, LARGE_BATCH.get(name, 250)):
            whole = MEDIAN_LATENCY[name]
            rows += [
                {
                    "backend": name,
                    "batch_size": size,
                    "layer": layer,
                    "seconds": whole * LAYER_SUM * share,
                    "forward_s": whole,
                    "method": f"synthetic split of {name}",
                }
                for layer, share in zip(names, shares, strict=True)
            ]
    pd.DataFrame(rows).to_csv(results / "layers.csv", index=False)


def _write_training_numpy(results: Path, metrics: pd.DataFrame, rng) -> None:
    """results/training_numpy/: the NumPy training's metrics, per-step table and summary."""
    folder = results / "training_numpy"
    folder.mkdir(parents=True, exist_ok=True)
    numpy_metrics = metrics.copy()
    numpy_metrics["test_accuracy"] = metrics["test_accuracy"] + 0.0004
    numpy_metrics["seconds"] = metrics["seconds"] * 1.1
    numpy_metrics.to_csv(folder / "metrics.csv", index=False)
    rows = []
    for run, dtype, steps, scale in (
        ("check", "float64", 20, 1e-13),
        ("training", "float32", 60, 1e-3),
    ):
        for step in range(1, steps + 1):
            rows.append(
                {
                    "run": run,
                    "dtype": dtype,
                    "step": step,
                    "epoch": 1,
                    "loss_torch": 2.3 / step,
                    "loss_numpy": 2.3 / step * (1 + scale),
                    "loss_relative_difference": scale,
                    "max_relative_parameter_difference": scale * step * rng.uniform(0.5, 1.5),
                }
            )
    pd.DataFrame(rows).to_csv(folder / "steps.csv", index=False)
    summary = {
        "test_images": 10000,
        "test_accuracy_numpy": 0.9795,
        "test_accuracy_torch": 0.9791,
        "same_predictions": 9961,
        "same_predictions_fraction": 0.9961,
        "dtype": "float32",
        "check": {
            "steps": 20,
            "max_loss_relative_difference": 1e-13,
            "max_relative_parameter_difference": 3e-12,
            "loss_tolerance": 1e-10,
            "parameter_tolerance": 1e-9,
        },
    }
    (folder / "summary.json").write_text(json.dumps(summary, indent=1))
