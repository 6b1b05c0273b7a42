"""Datasets by name: ``dataset: {name: fashion-mnist}`` selects a preset, as torchvision's classes do.

Each preset gives the four IDX files with the checksums their publishers give (md5 as in
torchvision's ``torchvision/datasets/mnist.py``; sha256 and sizes only where cited), the
mirrors to try, the image size and the number of classes. ``resolve`` fills a config's dataset
section from its preset; NumPy-free, the Snakefile calls it before validating the config.

A section's keys replace the preset's whole: given ``files`` are the files (nothing of the
preset's is merged into them, so a custom dataset never keeps another dataset's checksums or
sizes); given ``mirrors`` are the mirrors. A name that is no preset is a custom dataset, which
gives its ``files`` and ``mirrors`` itself.
"""

from __future__ import annotations

import copy
from typing import Any

from cnnbench.common.errors import UserError

_IDX_NAMES = {
    "train_images": "train-images-idx3-ubyte.gz",
    "train_labels": "train-labels-idx1-ubyte.gz",
    "test_images": "t10k-images-idx3-ubyte.gz",
    "test_labels": "t10k-labels-idx1-ubyte.gz",
}


def _files(checksums: dict[str, dict[str, Any]]) -> dict[str, dict[str, Any]]:
    return {role: {"file": _IDX_NAMES[role], **checksums[role]} for role in _IDX_NAMES}


PRESETS: dict[str, dict[str, Any]] = {
    # md5: torchvision's MNIST.resources; sha256 and size: the files as served by these mirrors
    # (the values config.yaml carried before presets existed, verified on every download).
    "mnist": {
        "mirrors": [
            "https://ossci-datasets.s3.amazonaws.com/mnist/",
            "https://storage.googleapis.com/cvdf-datasets/mnist/",
        ],
        "files": _files(
            {
                "train_images": {
                    "size": 9912422,
                    "md5": "f68b3c2dcbeaaa9fbdd348bbdeb94873",
                    "sha256": "440fcabf73cc546fa21475e81ea370265605f56be210a4024d2ca8f203523609",
                },
                "train_labels": {
                    "size": 28881,
                    "md5": "d53e105ee54ea40749a09fcbcd1e9432",
                    "sha256": "3552534a0a558bbed6aed32b30c495cca23d567ec52cac8be1a0730e8010255c",
                },
                "test_images": {
                    "size": 1648877,
                    "md5": "9fb629c4189551a2d022fa330f9573f3",
                    "sha256": "8d422c7b0a1c1c79245a5bcf07fe86e33eeafee792b84584aec276f5a2dbc4e6",
                },
                "test_labels": {
                    "size": 4542,
                    "md5": "ec29112dd5afa0611ce80d1b7f02629c",
                    "sha256": "f7ae60f92e00ec6debd23a6088c31dbd2371eca3ffa0defaefb259924204aec6",
                },
            }
        ),
    },
    # Zalando's Fashion-MNIST: md5 as torchvision's FashionMNIST.resources (and the publisher's
    # README); no exact sizes are published, so the server's Content-Length bounds a download.
    "fashion-mnist": {
        "mirrors": ["http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/"],
        "files": _files(
            {
                "train_images": {"md5": "8d4fb7e6c68d591d4c3dfef9ec88bf0d"},
                "train_labels": {"md5": "25c81989df183df01b3e8a0aad5dffbe"},
                "test_images": {"md5": "bef4ecab320f06d8554ea6380940ec79"},
                "test_labels": {"md5": "bb300cfdad3c16e7a12a480ee83cd310"},
            }
        ),
    },
    # ROIS-CODH's Kuzushiji-MNIST: md5 as torchvision's KMNIST.resources.
    "kmnist": {
        "mirrors": ["http://codh.rois.ac.jp/kmnist/dataset/kmnist/"],
        "files": _files(
            {
                "train_images": {"md5": "bdb82020997e1d708af4cf47b453dcf7"},
                "train_labels": {"md5": "e144d726b3acfaa3e44228e80efcd344"},
                "test_images": {"md5": "5c965bf0a639b31b8f53240b1b52f4d7"},
                "test_labels": {"md5": "7320c461ea6c1c855c0b718fb2a4b134"},
            }
        ),
    },
}
# Every preset: 28x28 grey images, 10 classes, 10 000 test images.
_SHAPE = {"image_size": [28, 28], "classes": 10}
PRESET_TEST_IMAGES = 10_000


class DatasetError(UserError, ValueError):
    """A dataset section that names no preset and does not describe its own files."""


def preset(name: str) -> dict[str, Any] | None:
    """The preset called ``name`` (case-insensitive), a copy, or None."""
    found = PRESETS.get(str(name).lower())
    return copy.deepcopy({**_SHAPE, **found}) if found is not None else None


def resolve(section: dict[str, Any]) -> dict[str, Any]:
    """The dataset ``section`` completed from its preset: each key given replaces the preset's."""
    if not isinstance(section, dict) or "name" not in section:
        return section  # the schema names what is missing
    base = preset(section["name"])
    if base is None:
        missing = [key for key in ("files", "mirrors") if key not in section]
        if missing:
            raise DatasetError(
                f"dataset.name {section['name']!r} is no preset ({', '.join(PRESETS)}): a custom "
                f"dataset gives dataset.{' and dataset.'.join(missing)} itself"
            )
        return {**_SHAPE, **copy.deepcopy(section)}
    return {**base, **copy.deepcopy(section)}


def test_images(section: dict[str, Any]) -> int | None:
    """How many test images a resolved dataset section has: a preset's (with its own files), else
    unknown before the files are read (None)."""
    base = preset(section["name"])
    return PRESET_TEST_IMAGES if base is not None and section["files"] == base["files"] else None
