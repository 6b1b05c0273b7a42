"""The comparison of experiments (results/report.html of a sweep, experiments.csv) from synthetic
result tables: only-changed settings, numbers taken from each experiment's tables, fitted slopes."""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml
from synthetic_results import ALL_BACKENDS, MEDIAN_LATENCY, write_synthetic_results

from cnnbench.common import config as cnnbench_config
from cnnbench.common.job import Job
from cnnbench.network.architecture import from_config
from cnnbench.report import compare

REPO = Path(__file__).resolve().parents[1]
SCHEMA = cnnbench_config.load_schema(REPO / "workflow" / "schemas" / "config.schema.yaml")
# the shipped sweep's experiments (examples/sweep.yaml)
SWEEP = yaml.safe_load((REPO / "examples" / "sweep.yaml").read_text())["experiments"]
LENET5 = SWEEP["lenet5"]["model"]
# each backend's latency grows as macs ** exponent (relative to the seed network)
EXPONENT = {
    "torch": 0.3,
    "onnxruntime": 0.5,
    "numpy_im2col": 0.7,
    "numba_loops": 0.9,
    "numpy_loops": 1.0,
}


def _sweep_configs() -> dict[str, dict]:
    config = yaml.safe_load((REPO / "config.yaml").read_text())
    config["inference"]["limit"] = 200
    config["experiments"] = {**SWEEP, "wide": {**SWEEP["wide"], "train": {"lr": 0.002}}}
    return cnnbench_config.experiments(config, SCHEMA)


@pytest.fixture(scope="module")
def sweep(tmp_path_factory):
    root = tmp_path_factory.mktemp("sweep")
    configs = _sweep_configs()
    seed_macs = from_config(configs["seed"]).macs
    inputs: dict[str, list[str]] = {"inference": []}
    for position, (name, config) in enumerate(configs.items()):
        folder = root / "experiments" / name
        write_synthetic_results(folder)
        results = folder / "results"
        scale = from_config(config).macs / seed_macs
        for backend in ALL_BACKENDS:
            path = results / "inference" / f"{backend}.csv"
            table = pd.read_csv(path)
            table["latency_s"] *= scale ** EXPONENT[backend]
            table.to_csv(path, index=False)
        metrics = pd.read_csv(results / "training" / "metrics.csv")
        metrics.loc[metrics.index[-1], "test_accuracy"] = 0.97 + position / 100
        metrics.to_csv(results / "training" / "metrics.csv", index=False)
        (results / "report.html").write_text("<html>its report</html>")
        for kind, path in {
            "metrics": results / "training" / "metrics.csv",
            "training_numpy_summary": results / "training_numpy" / "summary.json",
            "throughput": results / "throughput.csv",
            "agreement": results / "agreement.csv",
            "accuracy": results / "accuracy.csv",
            "gradcheck": results / "gradcheck.csv",
            "report": results / "report.html",
        }.items():
            inputs.setdefault(kind, []).append(str(path))
        for backend in config["inference"]["backends"]:
            inputs["inference"] += [
                str(results / "inference" / f"{backend}.{e}") for e in ("csv", "json")
            ]
    output = {"html": str(root / "report.html"), "csv": str(root / "experiments.csv")}
    compare.run(Job(inputs, output, {"experiments": configs}))
    return root, configs


def test_experiments_csv_has_one_row_per_experiment_and_backend(sweep):
    root, configs = sweep
    table = pd.read_csv(root / "experiments.csv")
    assert len(table) == 3 * len(ALL_BACKENDS)
    assert list(table.columns) == [
        "experiment",
        "model.layers",
        "model.hidden",
        "train.lr",
        *compare.COLUMNS,
    ]  # only what differs; the dataset, inference and the rest are shared
    for name, config in configs.items():
        own = table[table["experiment"] == name]
        architecture = from_config(config)
        assert set(own["parameters"]) == {architecture.parameter_count}
        assert set(own["macs"]) == {architecture.macs}
        assert own["backend"].tolist() == ALL_BACKENDS
    lenet = table[table["experiment"] == "lenet5"].set_index("backend")
    assert lenet.loc["torch", "model.hidden"] == "[120, 84]"
    assert table[table["experiment"] == "seed"]["train.lr"].iloc[0] == 0.001
    # the numbers are the experiment's own tables'
    results = root / "experiments" / "lenet5" / "results"
    torch_latency = pd.read_csv(results / "inference" / "torch.csv")["latency_s"].median()
    assert lenet.loc["torch", "latency_median_s"] == pytest.approx(torch_latency, rel=1e-8)
    throughput = pd.read_csv(results / "throughput.csv")
    onnx = throughput[(throughput.backend == "onnxruntime") & (throughput.batch_size == 1000)]
    assert lenet.loc["onnxruntime", "throughput_images_per_s"] == pytest.approx(
        onnx["images_per_s"].iloc[0], rel=1e-8
    )
    assert lenet.loc["onnxruntime", "throughput_batch_size"] == 1000
    assert lenet.loc["torch", "test_accuracy_torch"] == pytest.approx(0.98)
    summary = json.loads((results / "training_numpy" / "summary.json").read_text())
    assert lenet.loc["torch", "test_accuracy_numpy"] == summary["test_accuracy_numpy"]
    assert lenet.loc["torch", "same_class_as_reference"] == 1.0
    # the synthetic numpy_loops flips one near-tie image of 200
    assert lenet.loc["numpy_loops", "same_class_as_reference"] == pytest.approx(199 / 200)
    assert set(table["agreement"]) == {"fail"} and set(table["gradcheck"]) == {"pass"}


def test_fitted_slopes_recover_each_backends_growth(sweep):
    root, _ = sweep
    slopes = compare.fitted_slopes(pd.read_csv(root / "experiments.csv"))
    for backend, exponent in EXPONENT.items():
        assert slopes[backend] == pytest.approx(exponent, abs=1e-6), backend  # 9 digits in the csv
    page = (root / "report.html").read_text()
    row = re.search(
        r'<tr data-backend="numba_loops"><td>numba_loops</td><td class="num">(.*?)<', page
    )
    assert row.group(1) == "0.90"


def test_one_size_of_work_has_no_slope():
    table = pd.DataFrame(
        {"backend": ["torch"] * 2, "macs": [10, 10], "latency_median_s": [1e-4, 2e-4]}
    )
    assert compare.fitted_slopes(table) == {"torch": None}


def test_the_page_starts_with_the_comparison_and_links_each_report(sweep):
    root, _ = sweep
    page = (root / "report.html").read_text()
    assert "3 experiments compared" in page
    rows = re.findall(r'<tr data-experiment="(\w+)"><td><a href="([^"]+)">', page)
    assert rows == [(n, f"experiments/{n}/results/report.html") for n in ("seed", "lenet5", "wide")]
    for name, link in rows:
        assert (root / link).is_file(), name
    header = re.search(r'id="experiments-table"><thead>(.*?)</thead>', page).group(1)
    assert "model.layers" in header and "train.lr" in header and "dataset" not in header
    assert page.count("<img") == 2  # latency vs multiply-adds, accuracy vs latency
    lenet = re.search(r'<tr data-experiment="lenet5">(.*?)</tr>', page.split('id="speed-table"')[1])
    cells = re.findall(r'<td class="num" data-backend="(\w+)">(.*?)<br>', lenet.group(1))
    results = root / "experiments" / "lenet5" / "results"
    median = pd.read_csv(results / "inference" / "onnxruntime.csv")["latency_s"].median()
    assert dict(cells)["onnxruntime"] == compare.fmt.duration(median)
    assert "http" not in page.replace("http-equiv", "")  # self-contained


def test_changed_settings_compare_values_not_sources():
    configs = {"a": {"x": {"y": [1, 2]}, "d": {"name": "mnist", "files": 1}}}
    configs["b"] = {"x": {"y": [1, 2]}, "d": {"name": "mnist", "files": 2}}
    assert compare.changed_settings(configs) == {"a": {"d.files": "1"}, "b": {"d.files": "2"}}
    configs["b"]["x"]["y"] = [1, 3]
    configs["b"]["z"] = True
    assert compare.changed_settings(configs) == {
        "a": {"x.y": "[1, 2]", "d.files": "1", "z": "–"},
        "b": {"x.y": "[1, 3]", "d.files": "2", "z": "true"},
    }
    dataset = {"a": {"dataset": {"name": "mnist", "files": 1}}}
    dataset["b"] = {"dataset": {"name": "kmnist", "files": 2}}
    assert compare.changed_settings(dataset) == {
        "a": {"dataset.name": "mnist"},
        "b": {"dataset.name": "kmnist"},
    }


def test_fastest_backend_and_accuracy_come_from_the_tables(sweep):
    root, _ = sweep
    table = pd.read_csv(root / "experiments.csv")
    fastest = table.loc[table.groupby("experiment")["latency_median_s"].idxmin()]
    assert set(fastest["backend"]) == {"onnxruntime"}  # the synthetic peer is fastest
    assert min(MEDIAN_LATENCY, key=MEDIAN_LATENCY.get) == "onnxruntime"
    assert np.isfinite(table["latency_median_s"]).all()
