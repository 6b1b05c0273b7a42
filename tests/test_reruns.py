"""Edit the config or the code, rerun: exactly the jobs the edit affects run again (README, "What
reruns when"), and the report shows the config that produced its numbers.

Each case edits a copy of one finished small run (conftest.small_run: the project's code and its
results side by side, as in a checkout) and asserts the dry run's jobs as a set, both ways: every
job that must rerun is listed and nothing else is. One real rerun checks the report.
"""

from __future__ import annotations

import copy
import html
import re
import shutil
from pathlib import Path

import pytest
import yaml
from conftest import SMALL

from cnnbench import datasets
from cnnbench.backends import SLOW
from cnnbench.common import config as cnnbench_config

pytestmark = [pytest.mark.slow, pytest.mark.xdist_group("pipeline")]

BACKENDS = SMALL["inference"]["backends"]
FAST = [backend for backend in BACKENDS if backend not in SLOW]
SHARDS = SMALL["inference"]["shards"]


def inference(*backends: str, shards: int = SHARDS) -> set[str]:
    """The jobs predicting with ``backends`` (PyTorch-trained weights), their gathers included;
    ``shards``: inference.shards."""
    jobs = set()
    for backend in backends:
        own = shards if backend in SLOW else 1
        jobs |= {f"infer_shard[backend={backend}, shard={shard}]" for shard in range(own)}
        jobs.add(f"gather_inference[backend={backend}]")
    return jobs


def numpy_trained(*backends: str) -> set[str]:
    """The NumPy-trained weights through ``backends``."""
    return {f"infer_numpy_trained[backend={backend}]" for backend in backends}


# What a changed weights file reruns; what a changed NumPy training reruns; the report and target.
REPORT = {"report", "all"}
AFTER_NUMPY_TRAINING = numpy_trained(*FAST) | {"agreement_numpy_trained"}
AFTER_WEIGHTS = (
    {"gradcheck", "throughput", "bench_processes", "layer_times", "agreement"}
    | inference(*BACKENDS)
    | AFTER_NUMPY_TRAINING  # its agreement reads the PyTorch-trained torch predictions
)
AFTER_TRAINING = {"train", "export_weights", "train_numpy"} | AFTER_WEIGHTS | REPORT


def planned(result) -> set[str]:
    """The jobs a dry run lists: ``rule`` or ``rule[wildcards]``."""
    assert result.returncode == 0, result.stderr[-3000:]
    jobs = set()
    for block in re.split(r"\n\s*\n", result.stdout + "\n\n" + result.stderr):
        rule = re.search(r"^(?:local)?rule (\w+):$", block, re.MULTILINE)
        if rule:
            wildcards = re.search(r"^\s+wildcards: (.+)$", block, re.MULTILINE)
            jobs.add(rule[1] + (f"[{wildcards[1]}]" if wildcards else ""))
    if not jobs:
        assert "Nothing to be done" in result.stdout + result.stderr, result.stdout[-3000:]
    return jobs


@pytest.fixture
def run_copy(small_run, tmp_path, run_snakemake):
    """A copy of the finished small run (mtimes kept) and a way to run snakemake in it."""
    project, overlay = small_run
    copy = tmp_path / "project"
    shutil.copytree(project, copy, symlinks=True)

    def run(*args: str, overlay: dict = overlay, timeout: int = 300):
        return run_snakemake(copy, overlay, "--cores", "2", *args, timeout=timeout, project=copy)

    return copy, overlay, run


def mnist_files(**changes: dict) -> dict:
    """The mnist preset's files, the entries of ``changes`` updated."""
    files = copy.deepcopy(datasets.PRESETS["mnist"]["files"])
    for role, entry in changes.items():
        files[role].update(entry)
    return files


def changed(overlay: dict, section: str, key: str, value) -> dict:
    return {**overlay, section: {**overlay.get(section, {}), key: value}}


@pytest.mark.parametrize(
    ("section", "key", "value", "expected"),
    [
        # same files from elsewhere: the checksums say what a file is
        ("dataset", "mirrors", ["file:///nowhere/mnist/"], set()),
        # a file's entry: its download, then everything reading it (training first); a real
        # run of this one stops at the download, as it must: the file has 4542 bytes. (Files
        # given replace the preset's whole: all four, each as the preset gives it but one.)
        (
            "dataset",
            "files",
            mnist_files(test_labels={"size": 4600}),
            {"download[filename=t10k-labels-idx1-ubyte.gz]"} | AFTER_TRAINING,
        ),
        (
            "dataset",
            "files",
            mnist_files(test_labels={"file": "labels-renamed.gz"}),
            {"download[filename=labels-renamed.gz]"} | AFTER_TRAINING,
        ),
        ("model", "hidden", [200], AFTER_TRAINING),
        ("train", "epochs", 2, AFTER_TRAINING),
        ("train_numpy", "check_steps", 4, {"train_numpy"} | AFTER_NUMPY_TRAINING | REPORT),
        ("train_numpy", "threads", 2, {"train_numpy"} | AFTER_NUMPY_TRAINING | REPORT),
        ("gradcheck", "samples", 4, {"gradcheck"} | REPORT),
        (
            "inference",
            "warmup",
            1,
            inference(*BACKENDS) | {"agreement"} | AFTER_NUMPY_TRAINING | REPORT,
        ),
        ("inference", "throughput_repeats", 2, {"throughput"} | REPORT),
        # a backend left out: what compares or times them all, not the others' predictions
        (
            "inference",
            "backends",
            [backend for backend in BACKENDS if backend not in SLOW],
            {"throughput", "bench_processes", "layer_times", "agreement"} | REPORT,
        ),
        # only the slow backend is sharded
        ("inference", "shards", 3, inference(*SLOW, shards=3) | {"agreement"} | REPORT),
        ("bench", "rounds", 2, {"bench_processes", "layer_times"} | REPORT),
    ],
)
def test_a_setting_reruns_what_uses_it(run_copy, section, key, value, expected):
    _, overlay, run = run_copy
    assert planned(run("--dry-run", overlay=changed(overlay, section, key, value))) == expected


def test_a_renamed_dataset_reruns_what_records_its_name(run_copy):
    """Recorded by the export step in the manifest, which every weights consumer reads. (A name
    that is no preset is a custom dataset, which gives its files: here MNIST's.)"""
    _, overlay, run = run_copy
    renamed = changed(overlay, "dataset", "name", "MNIST (renamed)")
    renamed = changed(renamed, "dataset", "files", mnist_files())
    assert planned(run("--dry-run", overlay=renamed)) == AFTER_TRAINING - {"train"}


def test_command_line_config_is_tracked_too(run_copy):
    """`--config "train={lr: 0.002}"`: the issue's example, typed by the schema."""
    _, _, run = run_copy
    assert planned(run("--dry-run", "--config", "train={lr: 0.002}")) == AFTER_TRAINING


def test_a_comment_in_the_config_reruns_nothing(run_copy):
    copy, _, run = run_copy
    config = copy / "config.yaml"
    config.write_text(config.read_text().replace("\ntrain:\n", "\n# a comment\ntrain:\n"))
    assert planned(run("--dry-run")) == set()


def edit(path: Path) -> None:
    """Change ``path``'s text (a trailing comment) without changing what it does."""
    comment = "{# edited #}" if path.suffix == ".j2" else "# edited"
    path.write_text(path.read_text() + f"\n{comment}\n")


@pytest.mark.parametrize(
    ("source", "expected"),
    [
        # imported through cnnbench.ops by everything that runs NumPy layers (not by training)
        (
            "ops/loops.py",
            {"gradcheck", "torch_worked_example", "train_numpy", "throughput", "bench_processes"}
            | {"layer_times"}
            | inference("numpy_loops", "numpy_im2col")
            | {"agreement"}
            | AFTER_NUMPY_TRAINING
            | REPORT,
        ),
        (
            "backends/numba_loops.py",
            inference("numba_loops")
            | numpy_trained("numba_loops")
            | {
                "throughput",
                "bench_processes",
                "layer_times",
                "agreement",
                "agreement_numpy_trained",
            }
            | REPORT,
        ),
        ("steps/train.py", AFTER_TRAINING),
        # the shards are kept: gathering again does not predict again (with temp() shards,
        # Snakemake would rerun every shard, the slow backend's too)
        (
            "steps/gather.py",
            {f"gather_inference[backend={backend}]" for backend in BACKENDS}
            | {"agreement", "agreement_numpy_trained"}
            | REPORT,
        ),
        ("templates/report.html.j2", REPORT),
        ("report/sections/summary.py", REPORT),
        # a downloaded file is what its checksums say, whatever code fetched it
        ("steps/download.py", set()),
        # the benchmarks run outside the pipeline: no job runs this module
        ("bench/ops.py", set()),
    ],
)
def test_a_source_edit_reruns_what_runs_it(run_copy, source, expected):
    copy, _, run = run_copy
    edit(copy / "src/cnnbench" / source)
    assert planned(run("--dry-run")) == expected


def report_config(report: Path) -> dict:
    text = re.search(r'<pre id="config-text">(.*?)</pre>', report.read_text(), re.DOTALL)
    return yaml.safe_load(html.unescape(text[1]))


def effective_config(project: Path, overlay: dict) -> dict:
    """config.yaml with ``overlay`` merged in, key by key, as Snakemake merges config files, the
    dataset completed from its preset: the one experiment's config."""
    config = yaml.safe_load((project / "config.yaml").read_text())
    for section, values in overlay.items():
        config[section] = {**config[section], **values}
    cnnbench_config.resolve(config)
    config.pop("experiments")
    return config


def test_the_report_shows_the_config_of_its_numbers(run_copy):
    """A real rerun after an edit: the report's numbers and config are the new run's."""
    copy, overlay, run = run_copy
    report = copy / "results/report.html"
    assert report_config(report) == effective_config(copy, overlay)
    overlay = changed(overlay, "train", "epochs", 2)
    result = run(overlay=overlay, timeout=900)
    assert result.returncode == 0, result.stderr[-5000:]
    assert report_config(report) == effective_config(copy, overlay)
    page = report.read_text()
    training = re.search(r'<table class="data" id="training-table">.*?</table>', page, re.DOTALL)
    epochs = re.findall(r'<tr><td class="num">(\d+)</td>', training[0])
    assert epochs == ["1", "2"]
    assert planned(run("--dry-run", overlay=overlay)) == set()
