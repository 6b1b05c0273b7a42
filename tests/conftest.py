"""Shared test fixtures: the official MNIST files beside the repository serve as a file:// mirror."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from mnist_source import MnistMissing, locate_mnist

from cnnbench.common.job import run_job
from cnnbench.data import load_split
from cnnbench.network.architecture import SEED
from cnnbench.network.torch_model import Net
from cnnbench.network.weights import save_weights

REPO = Path(__file__).resolve().parents[1]
#: The files a run of the workflow reads: a copy of them is a checkout that tests may edit.
PROJECT_FILES = ("Snakefile", "config.yaml", "workflow", "src", "envs", "profiles")
#: A small config every end-to-end run starts from: every rule and backend, minutes on 2 cores.
SMALL = {
    "train": {"epochs": 1, "limit": 3000, "threads": 1},
    "train_numpy": {"check_steps": 5},
    "gradcheck": {"batch_size": 2, "samples": 5},
    "inference": {
        "backends": ["torch", "onnxruntime", "numpy_im2col", "numba_loops", "numpy_loops"],
        "limit": 24,
        "shards": 2,
        "warmup": 2,
        "throughput_batch_sizes": [1, 8],
        "throughput_loop_images": 4,
        "throughput_repeats": 1,
    },
    # the bench in fresh processes, as cheap as it goes while still showing a spread
    "bench": {"processes": 2, "rounds": 1, "images": 4, "batch_size": 8, "loop_images": 1},
}


@pytest.fixture(scope="session")
def mnist_dir() -> Path:
    """The four official MNIST files: see tests/mnist_source.py for where they are looked for."""
    try:
        return locate_mnist(log=lambda message: print(message, file=sys.stderr))
    except MnistMissing as missing:
        pytest.fail(f"{missing} (see README, 'Offline, or with a local copy of MNIST')")


@pytest.fixture(scope="session")
def mnist_mirror(mnist_dir: Path) -> str:
    return mnist_dir.as_uri() + "/"


def _torch_init_arrays() -> dict[str, np.ndarray]:
    torch.manual_seed(0)
    return {name: tensor.detach().numpy().copy() for name, tensor in Net(SEED).state_dict().items()}


@pytest.fixture
def init_arrays() -> dict[str, np.ndarray]:
    """Untrained weights at a realistic scale (PyTorch's default initialisation, seed 0), a fresh copy."""
    return _torch_init_arrays()


@pytest.fixture(scope="session")
def weights_path(tmp_path_factory) -> Path:
    """A weights.npz holding ``init_arrays``'s weights, shared by the whole session (read-only),
    with a manifest.json beside it recording its sha256, as the export step writes them."""
    path = tmp_path_factory.mktemp("weights") / "weights.npz"
    sha256 = save_weights(path, _torch_init_arrays(), SEED)
    record = {"sha256": sha256, "architecture": SEED.to_dict()}
    manifest_of(path).write_text(json.dumps(record))
    return path


def manifest_of(weights: Path) -> Path:
    """The manifest beside a weights file (results/model/ holds both)."""
    return weights.with_name("manifest.json")


def mnist_splits(mnist_dir: Path, test_images: int):
    """The training split and the first ``test_images`` of the test split, as load_split gives."""
    train_split = load_split(
        mnist_dir / "train-images-idx3-ubyte.gz", mnist_dir / "train-labels-idx1-ubyte.gz", SEED
    )
    images, labels = load_split(
        mnist_dir / "t10k-images-idx3-ubyte.gz", mnist_dir / "t10k-labels-idx1-ubyte.gz", SEED
    )
    return train_split, (images[:test_images], labels[:test_images])


def run_step(step, input=None, output=None, settings=None) -> None:
    """Run a pipeline step's module (``cnnbench.steps.<step>``) through its job entry point,
    exactly as a rule does, with the named files and settings given."""
    job = {"input": _strings(input or {}), "output": _strings(output or {}), "settings": settings}
    run_job(step.run, [json.dumps({key: value or {} for key, value in job.items()})])


def _strings(files: dict) -> dict:
    return {
        name: [str(p) for p in value] if isinstance(value, list | tuple) else str(value)
        for name, value in files.items()
    }


@pytest.fixture(scope="session")
def run_snakemake() -> Callable[..., subprocess.CompletedProcess]:
    """Run the workflow of ``project`` (this repository unless given) in ``workdir`` with its
    config.yaml plus ``overlay`` (a dict of overrides, written to ``workdir/overlay.yaml``).

    The test interpreter's bin folder goes first on PATH: rules call ``python``, as under `make run`.
    """

    def run(
        workdir: Path, overlay: dict, *args: str, timeout: int = 900, project: Path = REPO
    ) -> subprocess.CompletedProcess:
        workdir.mkdir(parents=True, exist_ok=True)
        overlay_path = workdir / "overlay.yaml"
        overlay_path.write_text(yaml.safe_dump(overlay))
        command = [sys.executable, "-m", "snakemake", "--snakefile", str(project / "Snakefile")]
        command += [
            "--directory",
            str(workdir),
            "--configfile",
            str(project / "config.yaml"),
            str(overlay_path),
        ]
        path = f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"
        return subprocess.run(
            [*command, *args],
            capture_output=True,
            text=True,
            env={**os.environ, "PATH": path},
            timeout=timeout,
        )

    return run


def copy_project(target: Path) -> Path:
    """This repository's workflow and code (PROJECT_FILES) copied to ``target``."""
    for name in PROJECT_FILES:
        source = REPO / name
        if source.is_dir():
            ignore = shutil.ignore_patterns("__pycache__", "*.egg-info")
            shutil.copytree(source, target / name, ignore=ignore)
        else:
            target.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, target / name)
    return target


@pytest.fixture(scope="session")
def small_run(tmp_path_factory, mnist_mirror, run_snakemake) -> tuple[Path, dict]:
    """A finished run of SMALL (the local MNIST mirror) inside a copy of the project, results
    beside the code as in a checkout: (project folder, overlay). Shared by the session: copy it
    before changing anything (``shutil.copytree(..., symlinks=True)`` keeps the mtimes)."""
    project = copy_project(tmp_path_factory.mktemp("pipeline") / "project")
    overlay = {**SMALL, "dataset": {"mirrors": [mnist_mirror]}}
    result = run_snakemake(project, overlay, "--cores", "2", project=project)
    assert result.returncode == 0, result.stderr[-5000:]
    return project, overlay
