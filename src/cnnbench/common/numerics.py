"""Error norms and finite differences: how computed values are compared with references.

NumPy only; used by the gradient-check step, the benchmarks and the tests.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np


def max_abs_error(actual: np.ndarray, expected: np.ndarray) -> float:
    """max|actual - expected|, in float64; the shapes must be equal (no broadcasting)."""
    actual, expected = np.asarray(actual), np.asarray(expected)
    if actual.shape != expected.shape:
        raise ValueError(f"shapes differ: {actual.shape} vs {expected.shape}")
    if actual.dtype == expected.dtype == np.float32 and actual.size:
        return _max_abs_error_float32(actual, expected)
    difference = np.subtract(actual, expected, dtype=np.float64)
    return float(np.max(np.abs(difference, out=difference)))


def _max_abs_error_float32(actual: np.ndarray, expected: np.ndarray) -> float:
    """``max_abs_error`` of two float32 arrays from half the bytes (the twin run compares every
    parameter after every step): rounding to float32 keeps order, so the largest difference is
    among the elements whose float32 difference is the largest; only those are redone in float64."""
    with np.errstate(over="ignore"):  # inf in float32 is still the largest
        rounded = np.subtract(actual, expected)
    largest = np.abs(rounded, out=rounded).max()
    if np.isnan(largest):
        return float(largest)
    where = np.flatnonzero(rounded == largest)
    exact = actual.reshape(-1)[where].astype(np.float64) - expected.reshape(-1)[where]
    return float(np.max(np.abs(exact)))


def max_norm_relative_error(actual: np.ndarray, expected: np.ndarray) -> float:
    """max|actual - expected| / max|expected| (the max-norm relative error; 0 if both are 0)."""
    expected = np.asarray(expected)
    if np.issubdtype(expected.dtype, np.floating) and expected.size:
        scale = float(np.maximum(expected.max(), -expected.min()))  # no |expected| array
    else:
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
