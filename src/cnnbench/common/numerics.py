"""Error norms and finite differences: how computed values are compared with references.

NumPy only; used by the gradient-check step, the benchmarks and the tests.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np


def max_abs_error(actual: np.ndarray, expected: np.ndarray) -> float:
    """max|actual - expected|, in float64; the shapes must be equal (no broadcasting)."""
    actual, expected = np.asarray(actual, np.float64), np.asarray(expected, np.float64)
    if actual.shape != expected.shape:
        raise ValueError(f"shapes differ: {actual.shape} vs {expected.shape}")
    return float(np.max(np.abs(actual - expected)))


def max_norm_relative_error(actual: np.ndarray, expected: np.ndarray) -> float:
    """max|actual - expected| / max|expected| (the max-norm relative error; 0 if both are 0)."""
    scale = float(np.max(np.abs(expected)))
    difference = max_abs_error(actual, expected)
    return difference / scale if scale > 0 else difference


def perturbed(
    function: Callable[[], Any], array: np.ndarray, index: tuple[int, ...], step: float
) -> tuple[Any, Any]:
    """``function()`` with ``array[index]`` raised by ``step``, then lowered by ``step``.

    ``function`` reads ``array``, which is changed in place and restored to its exact value.
    """
    original = array[index]
    try:
        array[index] = original + step
        above = function()
        array[index] = original - step
        below = function()
    finally:
        array[index] = original
    return above, below


def central_difference(
    function: Callable[[], float], array: np.ndarray, index: tuple[int, ...], step: float
) -> float:
    """(f(array[index] + step) - f(array[index] - step)) / (2 step); see ``perturbed``."""
    above, below = perturbed(function, array, index, step)
    return (above - below) / (2 * step)
