"""The real Snakemake workflow end to end, on a small config and the local file:// MNIST mirror."""

from __future__ import annotations

import csv
import hashlib
import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from conftest import REPO, SMALL

from cnnbench.backends import SLOW
from cnnbench.network.architecture import SEED
from cnnbench.network.weights import load_weights, save_weights

BACKENDS = SMALL["inference"]["backends"]

pytestmark = [pytest.mark.slow, pytest.mark.xdist_group("pipeline")]


def read_csv(path: Path) -> list[dict]:
    with open(path, newline="") as stream:
        return list(csv.DictReader(stream))


@pytest.fixture(scope="module")
def pipeline(small_run):
    return small_run


def test_pipeline_produces_every_result(pipeline):
    results = pipeline[0] / "results"
    metrics = read_csv(results / "training/metrics.csv")
    assert [row["epoch"] for row in metrics] == ["1"]
    assert (
        float(metrics[0]["test_accuracy"]) > 0.6
    )  # 3000 images, one epoch: learning, not converged
    manifest = json.loads((results / "model/manifest.json").read_text())
    assert manifest["train_config"]["limit"] == 3000
    gradcheck = read_csv(results / "gradcheck.csv")
    assert gradcheck and all(row["passed"] == "True" for row in gradcheck)
    assert {row["tensor"] for row in gradcheck} >= {"conv1.weight", "fc2.bias", "input"}
    for backend in BACKENDS:
        rows = read_csv(results / f"inference/{backend}.csv")
        assert [int(row["index"]) for row in rows] == list(range(24)), backend
        meta = json.loads((results / f"inference/{backend}.json").read_text())
        assert meta["images"] == 24
    assert json.loads((results / "inference/numpy_loops.json").read_text())["shards"] == 2
    agreement = read_csv(results / "agreement.csv")
    with_torch = [row for row in agreement if "torch" in (row["backend_a"], row["backend_b"])]
    assert len(with_torch) == len(BACKENDS) - 1
    assert all(
        int(row["agree"]) == 24 and float(row["max_abs_logit_diff"]) <= 1e-3 for row in with_torch
    )
    # Training in NumPy: the float64 check, then the run's 24 steps (3000 images, batch 128).
    steps = read_csv(results / "training_numpy/steps.csv")
    assert [(row["run"], row["step"]) for row in steps] == [
        *(("check", str(k)) for k in range(1, 6)),
        *(("training", str(k)) for k in range(1, 25)),
    ]
    assert all(float(row["max_relative_parameter_difference"]) <= 1e-9 for row in steps[:5])
    assert [row["epoch"] for row in read_csv(results / "training_numpy/metrics.csv")] == ["1"]
    summary = json.loads((results / "training_numpy/summary.json").read_text())
    assert summary["same_predictions_fraction"] > 0.95
    numpy_manifest = json.loads((results / "model/manifest_numpy.json").read_text())
    assert numpy_manifest["weights_file"] == "weights_numpy.npz"
    numpy_trained = read_csv(results / "agreement_numpy_trained/agreement.csv")
    among = [row for row in numpy_trained if "torch" not in (row["backend_a"], row["backend_b"])]
    fast = [backend for backend in BACKENDS if backend not in SLOW]  # the NumPy-trained run's
    pairs = len(fast) * (len(fast) - 1) // 2  # every unordered pair of them: 6 of 4
    assert len(among) == pairs and all(int(row["agree"]) == 24 for row in among)
    throughput = read_csv(results / "throughput.csv")
    # Loop backends measure on throughput_loop_images (4) images: batch 8 becomes one batch of 4.
    assert {(row["backend"], row["batch_size"]) for row in throughput} == {
        (backend, size)
        for backend in BACKENDS
        for size in (("1", "4") if backend in SLOW else ("1", "8"))
    }
    # the bench in 2 fresh processes: one median per backend and process, batch 1 and batch 8
    bench = json.loads((results / "bench_processes.json").read_text())
    assert bench["processes"] == 2 and bench["batch_size"] == 8
    assert len(bench["per_process"]) == 2
    for run in bench["per_process"]:
        assert list(run["latency"]) == BACKENDS and list(run["batch"]) == BACKENDS
        assert all(seconds > 0 for seconds in (*run["latency"].values(), *run["batch"].values()))
        assert run["batches"] == {name: 1 if name in SLOW else 8 for name in BACKENDS}
    environment = json.loads((results / "environment.json").read_text())
    assert environment["threads"] == 1
    report = (results / "report.html").read_text()
    assert "numpy_loops" in report and "onnxruntime" in report and manifest["sha256"] in report
    assert 'id="variance-table"' in report and "Between 2 fresh processes" in report
    # this machine's limits and every splittable backend's time per layer, in the report
    machine = json.loads((results / "machine.json").read_text())
    assert machine["peak_gflops"] > 0 and machine["roofs"]["memory"] > 0
    layers = read_csv(results / "layers.csv")
    names = [layer["name"] for layer in manifest["architecture"]["layers"]]
    split = sorted({row["backend"] for row in layers})
    assert split == sorted(BACKENDS)
    for backend in split:
        for size in {row["batch_size"] for row in layers if row["backend"] == backend}:
            rows = [r for r in layers if r["backend"] == backend and r["batch_size"] == size]
            assert [r["layer"] for r in rows] == names, (backend, size)
    assert 'id="where-table"' in report and 'id="roofs-table"' in report
    assert 'id="above-roof"' not in report, "a layer ran above this machine's roofs"
    for rule in (
        "train",
        "gradcheck",
        "throughput",
        "infer_numpy_loops_1",
        "bench_processes",
        "machine_limits",
        "layer_times",
        "train_numpy",
        "infer_numpy_trained_onnxruntime",
    ):
        assert (results / f"benchmarks/{rule}.tsv").is_file(), rule
        assert (results / f"logs/{rule}.log").is_file(), rule


def test_pipeline_rerun_has_nothing_to_do(pipeline, run_snakemake):
    workdir, overlay = pipeline
    result = run_snakemake(
        workdir, overlay, "--cores", "2", "--dry-run", timeout=120, project=workdir
    )
    assert result.returncode == 0
    assert "Nothing to be done" in result.stdout + result.stderr


def test_corrupted_mirror_fails_cleanly(tmp_path, mnist_dir, run_snakemake):
    mirror = tmp_path / "mirror"
    mirror.mkdir()
    damaged = bytearray((mnist_dir / "t10k-labels-idx1-ubyte.gz").read_bytes())
    damaged[-20] ^= 0x55
    (mirror / "t10k-labels-idx1-ubyte.gz").write_bytes(damaged)
    workdir = tmp_path / "run"
    workdir.mkdir()
    result = run_snakemake(
        workdir,
        {"dataset": {"mirrors": [mirror.as_uri() + "/"]}},
        "--cores",
        "1",
        "results/data/t10k-labels-idx1-ubyte.gz",
        timeout=120,
    )
    assert result.returncode != 0
    left = [p.relative_to(workdir) for p in (workdir / "results").rglob("*") if p.is_file()]
    assert left == [Path("results/logs/download_t10k-labels-idx1-ubyte.gz.log")]
    log = (workdir / "results/logs/download_t10k-labels-idx1-ubyte.gz.log").read_text()
    assert "checksum mismatch" in log and "expected ec29112dd5afa0611ce80d1b7f02629c" in log


def test_replaced_weights_stop_the_consumers_until_reexported(pipeline, tmp_path, run_snakemake):
    """Valid weights that are not the exported ones: the consumer stops in one line naming the
    fix, and the fix (re-export from the checkpoint) restores the exported bytes."""
    workdir, overlay = pipeline
    copy = tmp_path / "copy"
    shutil.copytree(workdir, copy, symlinks=True)  # results and .snakemake, mtimes kept
    weights = copy / "results/model/weights.npz"
    exported = json.loads((copy / "results/model/manifest.json").read_text())["sha256"]
    arrays = load_weights(weights, SEED)
    arrays["fc2.bias"] += np.float32(0.5)
    save_weights(weights, arrays, SEED)
    result = run_snakemake(
        copy, overlay, "--cores", "1", "results/gradcheck.csv", timeout=300, project=copy
    )
    assert result.returncode != 0
    log = (copy / "results/logs/gradcheck.log").read_text().strip().splitlines()
    assert log[-1].startswith("cnnbench.steps.gradcheck: error: results/model/weights.npz are not")
    assert log[-1].endswith("snakemake --cores 4 --forcerun export_weights")
    assert not any("Traceback" in line for line in log)
    fixed = run_snakemake(
        copy,
        overlay,
        "--cores",
        "1",
        "--forcerun",
        "export_weights",
        "results/gradcheck.csv",
        timeout=600,
        project=copy,
    )
    assert fixed.returncode == 0, fixed.stderr[-3000:]
    assert hashlib.sha256(weights.read_bytes()).hexdigest() == exported


def test_lenet5_example_runs_end_to_end_with_every_backend_agreeing(
    tmp_path, mnist_mirror, run_snakemake
):
    """The shipped examples/lenet5.yaml (max pooling, two hidden layers) through the whole
    workflow at small limits: every backend predicts the same class on every image."""
    import yaml

    from cnnbench.network.architecture import build

    lenet = yaml.safe_load((REPO / "examples" / "lenet5.yaml").read_text())["model"]
    overlay = {
        **SMALL,
        "model": lenet,
        "train": {**SMALL["train"], "limit": 1000},
        "dataset": {"mirrors": [mnist_mirror]},
    }
    result = run_snakemake(tmp_path, overlay, "--cores", "2")
    assert result.returncode == 0, result.stderr[-5000:]
    results = tmp_path / "results"
    manifest = json.loads((results / "model/manifest.json").read_text())
    assert manifest["architecture"] == build(lenet, (1, 28, 28), 10).to_dict()
    agreement = read_csv(results / "agreement.csv")
    pairs = len(BACKENDS) * (len(BACKENDS) - 1) // 2
    assert len(agreement) == pairs
    assert all(row["agree"] == row["images"] == "24" for row in agreement), agreement
    assert all(float(row["max_abs_logit_diff"]) < 1e-4 for row in agreement), agreement
    gradcheck = read_csv(results / "gradcheck.csv")
    assert {row["tensor"] for row in gradcheck} >= {"conv1.weight", "fc3.bias", "input"}
    assert all(row["passed"] == "True" for row in gradcheck)
    report = (results / "report.html").read_text()
    assert "max pool 2×2 /2" in report and "fc3" in report
