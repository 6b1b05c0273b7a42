"""Where the tests find MNIST's four .gz files, in this order:

1. ``$CNNBENCH_MNIST_DIR``, when set (it must hold the files);
2. ``../shared/mnist`` beside the repository (this project's layout; CI stays offline);
3. a cache (``$XDG_CACHE_HOME/cnnbench/mnist``, default ``~/.cache/cnnbench/mnist``), filled once
   through the project's own download code from config.yaml's mirrors, every checksum verified.
"""

from __future__ import annotations

import fcntl
import os
from pathlib import Path

import yaml

from cnnbench import data, datasets

REPO = Path(__file__).resolve().parents[1]


class MnistMissing(Exception):
    pass


def dataset_config(repo: Path = REPO) -> dict:
    """config.yaml's dataset section, completed from its preset."""
    return datasets.resolve(yaml.safe_load((repo / "config.yaml").read_text())["dataset"])


def default_cache(environ=os.environ) -> Path:
    base = environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "cnnbench" / "mnist"


def _complete(folder: Path, dataset: dict) -> bool:
    return all((folder / spec["file"]).is_file() for spec in dataset["files"].values())


def locate_mnist(
    environ=os.environ, repo: Path = REPO, cache: Path | None = None, log=print
) -> Path:
    """The folder holding the four files (see the module docstring), or MnistMissing saying why."""
    dataset = dataset_config(repo)
    if environ.get("CNNBENCH_MNIST_DIR"):
        folder = Path(environ["CNNBENCH_MNIST_DIR"])
        if not _complete(folder, dataset):
            raise MnistMissing(
                f"CNNBENCH_MNIST_DIR={folder} does not hold the four MNIST .gz files"
            )
        return folder
    shared = repo.parent / "shared" / "mnist"
    if _complete(shared, dataset):
        return shared
    cache = cache or default_cache(environ)
    cache.mkdir(parents=True, exist_ok=True)
    # One pytest worker downloads; the others wait for it, then find verified files.
    with open(cache / ".lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        for spec in dataset["files"].values():
            target = cache / spec["file"]
            wanted = {name: spec[name] for name in data.DIGESTS if name in spec}
            if target.is_file() and all(
                data.file_digests(target)[name] == value for name, value in wanted.items()
            ):
                continue
            log(f"fetching {spec['file']} into {cache} (once; checksums verified)")
            try:
                data.download(
                    spec["file"], dataset["mirrors"], target, wanted, size=spec.get("size"), log=log
                )
            except data.DownloadError as error:
                raise MnistMissing(
                    f"no MNIST files in {shared} nor {cache}, and the download failed ({error}); "
                    "put the four official .gz files in one of them or set CNNBENCH_MNIST_DIR"
                ) from None
    return cache
