"""Shared test fixtures: the official MNIST files beside the repository serve as a file:// mirror."""

from __future__ import annotations

from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
MNIST_DIR = REPO.parent / "shared" / "mnist"


@pytest.fixture(scope="session")
def mnist_dir() -> Path:
    if not (MNIST_DIR / "t10k-labels-idx1-ubyte.gz").is_file():
        pytest.fail(
            f"the MNIST mirror folder {MNIST_DIR} is missing (see README: running the tests)"
        )
    return MNIST_DIR


@pytest.fixture(scope="session")
def mnist_mirror(mnist_dir: Path) -> str:
    return mnist_dir.as_uri() + "/"
