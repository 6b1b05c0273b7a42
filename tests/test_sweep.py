"""Experiments end to end: the shipped sweep through the real workflow at small limits, work shared
where settings are equal, and a sweep's edits rerunning only what they affect."""

from __future__ import annotations

import csv
import json
import re
import shutil
from pathlib import Path

import pytest
import yaml
from conftest import SMALL, copy_project
from test_reruns import planned

from cnnbench.common import sweep

REPO = Path(__file__).resolve().parents[1]
SHIPPED = yaml.safe_load((REPO / "examples" / "sweep.yaml").read_text())["experiments"]
# The shipped sweep and an experiment that differs from the seed only in inference: it shares the
# seed's training. The backends that start quickly run every network; numba_loops (about 10 s of
# compiling in each of its jobs) and numpy_loops are left to the pipeline test, which runs them
# on the seed network and LeNet-5, and to tests/test_backend_architectures.py (any network).
EXPERIMENTS = {**SHIPPED, "seed-12": {"inference": {"limit": 12}}}
BACKENDS = ["torch", "onnxruntime", "numpy_im2col"]

pytestmark = [pytest.mark.slow, pytest.mark.xdist_group("pipeline")]


def read_csv(path: Path) -> list[dict]:
    with open(path, newline="") as stream:
        return list(csv.DictReader(stream))


@pytest.fixture(scope="module")
def sweep_run(tmp_path_factory, mnist_mirror, run_snakemake):
    """A finished sweep in a copy of the project: (project, overlay, run)."""
    project = copy_project(tmp_path_factory.mktemp("sweep") / "project")
    overlay = {
        **SMALL,
        "train": {**SMALL["train"], "limit": 1000},
        "dataset": {"name": "mnist", "mirrors": [mnist_mirror]},
        # batch 1 is timed image by image in inference; throughput only at a larger batch
        "inference": {**SMALL["inference"], "backends": BACKENDS, "throughput_batch_sizes": [64]},
        "experiments": EXPERIMENTS,
    }

    def run(*args: str, overlay: dict = overlay, timeout: int = 300, where: Path = project):
        return run_snakemake(where, overlay, "--cores", "2", *args, timeout=timeout, project=where)

    result = run(timeout=1500)
    assert result.returncode == 0, result.stderr[-5000:]
    return project, overlay, run


def test_every_experiment_runs_the_whole_pipeline(sweep_run):
    project, _, _ = sweep_run
    results = project / "results"
    for name in EXPERIMENTS:
        own = results / "experiments" / name
        assert (own / "report.html").is_file(), name
        assert (own / "gradcheck.csv").is_file() and (own / "throughput.csv").is_file(), name
        images = 12 if name == "seed-12" else 24
        for backend in BACKENDS:
            rows = read_csv(own / "inference" / f"{backend}.csv")
            assert len(rows) == images, (name, backend)
        agreement = read_csv(own / "agreement_numpy_trained" / "agreement.csv")
        assert agreement and all(int(row["images"]) == images for row in agreement)
        # where the time goes: per layer of the experiment's own network, every split backend
        layers = read_csv(own / "layers.csv")
        names = {row["layer"] for row in layers}
        assert any(name.startswith("pool") for name in names) == (name == "lenet5"), names
        assert {row["backend"] for row in layers} == set(BACKENDS)
    # the machine's limits: measured once for the whole sweep
    assert (results / "machine.json").is_file()
    assert not list((results / "experiments").glob("*/machine.json"))
    # one download, three trainings for four experiments: seed-12 trained once with seed
    assert sorted(p.name for p in (results / "data").iterdir()) == ["mnist"]
    assert len(list((results / "data" / "mnist").glob("*-ubyte.gz"))) == 4
    trainings = sorted(p.name for p in (results / "trainings").iterdir())
    assert len(trainings) == 3 and all(re.fullmatch(r"mnist-[0-9a-f]{10}", t) for t in trainings)
    for training in trainings:
        model = results / "trainings" / training / "model"
        manifest = json.loads((model / "manifest.json").read_text())
        assert manifest["train_config"]["limit"] == 1000


def test_the_comparison_is_the_page_a_user_opens(sweep_run):
    project, _, _ = sweep_run
    results = project / "results"
    page = (results / "report.html").read_text()
    assert "4 experiments compared" in page
    # in the config's order (the test's overlay file lists them sorted)
    order = list(yaml.safe_load((project / "overlay.yaml").read_text())["experiments"])
    links = re.findall(r'<tr data-experiment="([\w-]+)"><td><a href="([^"]+)">', page)
    assert links == [(name, f"experiments/{name}/report.html") for name in order]
    table = read_csv(results / "experiments.csv")
    assert [(row["experiment"], row["backend"]) for row in table] == [
        (name, backend) for name in order for backend in BACKENDS
    ]
    # the settings that differ, and nothing else
    settings = list(table[0])[1 : list(table[0]).index("parameters")]
    assert sorted(settings) == ["inference.limit", "model.hidden", "model.layers"]
    wide = [row for row in table if row["experiment"] == "wide"]
    assert wide[0]["model.hidden"] == "[500]"
    for row in table:
        assert float(row["latency_median_s"]) > 0 and float(row["throughput_images_per_s"]) > 0
        assert row["gradcheck"] == "pass" and row["agreement"] == "pass", row
        assert 0 < float(row["test_accuracy_torch"]) <= 1
    seed = json.loads(
        next((results / "trainings").glob("*/training_numpy/summary.json")).read_text()
    )
    assert seed["test_images"] == 10000


def _jobs_outside(jobs: set[str], experiment: str, training: str) -> set[str]:
    own = (f"experiment={experiment}", f"training={training}")
    return {job for job in jobs if not any(part in job for part in own)}


def test_adding_removing_or_editing_an_experiment_reruns_only_its_jobs(sweep_run, tmp_path):
    project, overlay, run = sweep_run
    copy = tmp_path / "project"
    shutil.copytree(project, copy, symlinks=True)  # mtimes and .snakemake kept

    added = {**overlay, "experiments": {**EXPERIMENTS, "lr": {"train": {"lr": 0.002}}}}
    jobs = planned(run("--dry-run", overlay=added, where=copy))
    key = _training_key(copy, added, "lr")
    assert _jobs_outside(jobs, "lr", key) == {"compare", "all"}
    assert {"train", "export_weights", "train_numpy", "report", "gradcheck"} <= {
        job.split("[")[0] for job in jobs
    }

    removed = {**overlay, "experiments": {n: e for n, e in EXPERIMENTS.items() if n != "wide"}}
    assert planned(run("--dry-run", overlay=removed, where=copy)) == {"compare", "all"}

    edited = dict(EXPERIMENTS, **{"seed-12": {"inference": {"limit": 10}}})
    jobs = planned(run("--dry-run", overlay={**overlay, "experiments": edited}, where=copy))
    assert _jobs_outside(jobs, "seed-12", "-") == {"compare", "all"}
    assert not any(job.startswith(("train", "export_weights", "gradcheck")) for job in jobs)


def _training_key(project: Path, overlay: dict, name: str) -> str:
    from cnnbench.common import config as cnnbench_config

    config = yaml.safe_load((project / "config.yaml").read_text())
    for section, values in overlay.items():
        merged = {**config.get(section, {}), **values}
        config[section] = values if section == "experiments" else merged
    schema = cnnbench_config.load_schema(project / "workflow" / "schemas" / "config.schema.yaml")
    cnnbench_config.resolve(config)
    return sweep.training_key(cnnbench_config.experiments(config, schema)[name])
