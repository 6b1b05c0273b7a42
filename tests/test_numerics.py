"""Error norms: the float32 shortcut gives the float64 definition's values exactly."""

from __future__ import annotations

import numpy as np
import pytest

from cnnbench.common.numerics import max_abs_error, max_norm_relative_error


def by_definition(actual: np.ndarray, expected: np.ndarray) -> float:
    return float(np.max(np.abs(actual.astype(np.float64) - expected.astype(np.float64))))


@pytest.mark.parametrize("seed", range(40))
def test_max_abs_error_of_float32_arrays_is_the_float64_difference(seed):
    """Random shapes, magnitudes and sizes of difference (most of which float32 would round):
    the exact float64 value, not its float32 rounding."""
    rng = np.random.default_rng(seed)
    shape = tuple(rng.integers(1, 40, size=rng.integers(1, 4)))
    expected = (rng.standard_normal(shape) * 10.0 ** rng.integers(-6, 6)).astype(np.float32)
    noise = rng.standard_normal(shape) * 10.0 ** rng.integers(-9, 6)
    actual = (expected + noise).astype(np.float32)
    assert max_abs_error(actual, expected) == by_definition(actual, expected)
    assert max_abs_error(actual[..., ::2], expected[..., ::2]) == by_definition(
        actual[..., ::2], expected[..., ::2]
    )
    reference = by_definition(actual, expected) / float(np.max(np.abs(expected)))
    assert max_norm_relative_error(actual, expected) == reference


def test_max_abs_error_takes_the_largest_of_float32_ties():
    """Three differences that round to the same float32 (and float32's value, 1 + 2**-23, is
    none of them): the largest, the second element's, exactly."""
    actual = np.full(3, 1 + 2**-23, dtype=np.float32)
    expected = np.array([2**-30, 2**-31, 2**-29], dtype=np.float32)
    rounded = float(np.max(np.abs(actual - expected)))
    assert rounded == 1 + 2**-23 != by_definition(actual, expected) == 1 + 2**-23 - 2**-31
    assert max_abs_error(actual, expected) == 1 + 2**-23 - 2**-31


def test_max_abs_error_keeps_nan_and_inf():
    a = np.array([1.0, np.nan, 2.0], dtype=np.float32)
    assert np.isnan(max_abs_error(a, np.ones(3, np.float32)))
    big = np.array([3e38, 0.0], dtype=np.float32)
    assert max_abs_error(big, -big) == by_definition(big, -big) > 6e38  # inf in float32
    assert np.isnan(max_norm_relative_error(np.ones(3, np.float32), a))


def test_max_abs_error_of_other_types_and_shapes():
    assert max_abs_error(np.array([1, 5]), np.array([2, 2])) == 3.0
    assert max_abs_error(np.array([1.0, 2.5]), np.array([1.0, 2.0], np.float32)) == 0.5
    assert max_norm_relative_error(np.zeros(2), np.zeros(2)) == 0.0
    with pytest.raises(ValueError, match="shapes differ"):
        max_abs_error(np.zeros(2, np.float32), np.zeros(3, np.float32))
