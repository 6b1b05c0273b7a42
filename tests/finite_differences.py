"""Finite-difference helpers for the op tests (the pipeline's gradcheck samples its own)."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from cnnbench.gradcheck import perturbed


def elementwise_relative_error(
    actual: np.ndarray, expected: np.ndarray, floor: float = 1e-8
) -> float:
    """max over elements of |a - b| / max(floor, |a| + |b|); the shapes must be equal."""
    a, b = np.asarray(actual, np.float64), np.asarray(expected, np.float64)
    if a.shape != b.shape:
        raise ValueError(f"shapes differ: {a.shape} vs {b.shape}")
    return float(np.max(np.abs(a - b) / np.maximum(floor, np.abs(a) + np.abs(b))))


def central_difference(
    function: Callable[[], float], array: np.ndarray, index: tuple[int, ...], step: float
) -> float:
    """(f(array[index] + step) - f(array[index] - step)) / (2 step); see ``perturbed``."""
    above, below = perturbed(function, array, index, step)
    return (above - below) / (2 * step)
