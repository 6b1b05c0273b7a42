"""Element-wise relative error for the op tests (finite differences: cnnbench.common.numerics)."""

from __future__ import annotations

import numpy as np


def elementwise_relative_error(
    actual: np.ndarray, expected: np.ndarray, floor: float = 1e-8
) -> float:
    """max over elements of |a - b| / max(floor, |a| + |b|); the shapes must be equal."""
    a, b = np.asarray(actual, np.float64), np.asarray(expected, np.float64)
    if a.shape != b.shape:
        raise ValueError(f"shapes differ: {a.shape} vs {b.shape}")
    return float(np.max(np.abs(a - b) / np.maximum(floor, np.abs(a) + np.abs(b))))
