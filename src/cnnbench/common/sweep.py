"""A sweep's shared work: which experiments share a dataset download and a training, and what the
whole sweep will cost. NumPy-free: the workflow reads it before any job runs.

Work is shared where the settings that determine it are equal. A dataset is its files (names
and checksums; mirrors only say where to fetch them): one download per dataset, in
results/data/<dataset>/. A training is its dataset, model, ``train`` and ``train_numpy``
settings: experiments that differ only in what runs on the trained weights (``gradcheck``,
``inference``, ``bench``) train once, in results/trainings/<dataset>-<digest>/, a folder named
by the dataset and a digest of those settings, so adding, removing or renaming an experiment
never moves another's training.
"""

from __future__ import annotations

import hashlib
import json
import re
from typing import Any

from cnnbench import datasets
from cnnbench.common.errors import UserError

# the config sections a training depends on (the dataset by its files, see dataset_identity)
TRAINING_SECTIONS = ("model", "train", "train_numpy")
DIGEST_LENGTH = 10


class SweepError(UserError, ValueError):
    """Experiments whose shared work cannot be told apart."""


def dataset_key(dataset: dict[str, Any]) -> str:
    """The dataset's folder name: its name, lower case, anything but letters, digits, '.', '_'
    and '-' replaced by '-'."""
    return re.sub(r"[^a-z0-9._-]+", "-", str(dataset["name"]).lower()).strip("-.") or "dataset"


def dataset_identity(dataset: dict[str, Any]) -> dict[str, Any]:
    """What a dataset's content depends on: everything but its mirrors."""
    return {key: value for key, value in dataset.items() if key != "mirrors"}


def training_key(config: dict[str, Any]) -> str:
    """``<dataset>-<digest>``: the folder of the training ``config`` determines."""
    determining = {
        "dataset": dataset_identity(config["dataset"]),
        **{section: config[section] for section in TRAINING_SECTIONS},
    }
    text = json.dumps(determining, sort_keys=True, separators=(",", ":"))
    return f"{dataset_key(config['dataset'])}-{hashlib.sha256(text.encode()).hexdigest()[:DIGEST_LENGTH]}"


def datasets_of(experiments: dict[str, dict]) -> dict[str, dict[str, Any]]:
    """Dataset key -> dataset section (the first experiment's, mirrors included); two datasets
    with one name but different files are refused, naming both experiments."""
    found: dict[str, tuple[str, dict[str, Any]]] = {}
    for name, config in experiments.items():
        key = dataset_key(config["dataset"])
        if key in found and dataset_identity(found[key][1]) != dataset_identity(config["dataset"]):
            raise SweepError(
                f"experiments {found[key][0]!r} and {name!r} both name their dataset {key!r} but "
                "give different files: give each dataset its own name"
            )
        found.setdefault(key, (name, config["dataset"]))
    return {key: dataset for key, (_, dataset) in found.items()}


def trainings_of(experiments: dict[str, dict]) -> dict[str, str]:
    """Experiment name -> its training key, in the experiments' order."""
    return {name: training_key(config) for name, config in experiments.items()}


def images_per_backend(experiments: dict[str, dict], slow: set[str]) -> dict[str, int | None]:
    """Test images each backend will predict over the whole sweep: every experiment's
    (``inference.limit`` or its test set), twice for the fast backends, which also run the
    NumPy-trained weights. None where a custom dataset's test set size is not known yet."""
    totals: dict[str, int | None] = {}
    for config in experiments.values():
        size = datasets.test_images(config["dataset"])
        limit = config["inference"]["limit"]
        images = min(limit, size) if limit and size else (limit or size)
        for backend in config["inference"]["backends"]:
            runs = 1 if backend in slow else 2
            known = totals.get(backend, 0)
            totals[backend] = None if known is None or images is None else known + runs * images
    return totals
