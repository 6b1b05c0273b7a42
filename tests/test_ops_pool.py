"""Pooling ops, both variants: bit for bit against torch in float64, ties and special values too."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from cnnbench.common.numerics import max_norm_relative_error
from cnnbench.ops import (
    avgpool2d_backward_loops,
    avgpool2d_backward_strided,
    avgpool2d_loops,
    avgpool2d_strided,
    maxpool2d_backward_loops,
    maxpool2d_backward_strided,
    maxpool2d_indices,
    maxpool2d_loops,
    maxpool2d_strided,
)

OPS = {
    ("max", "loops"): (maxpool2d_loops, maxpool2d_backward_loops),
    ("max", "strided"): (maxpool2d_strided, maxpool2d_backward_strided),
    ("avg", "loops"): (avgpool2d_loops, avgpool2d_backward_loops),
    ("avg", "strided"): (avgpool2d_strided, avgpool2d_backward_strided),
}
TORCH = {"max": torch.nn.functional.max_pool2d, "avg": torch.nn.functional.avg_pool2d}
# the loops variant runs at Python speed: smaller images keep the property tests fast
MAX_IMAGE_SIZE = {"loops": 9, "strided": 15}


def batch_last(x: np.ndarray) -> np.ndarray:
    """``x`` with the same values, laid out in memory as (C, H, W, N): what im2col layers give."""
    return np.ascontiguousarray(x.transpose(1, 2, 3, 0)).transpose(3, 0, 1, 2)


def tied(rng: np.random.Generator, shape: tuple[int, ...]) -> np.ndarray:
    """Post-ReLU small integers: about half the values 0, the rest 1 or 2: most windows tie."""
    return np.maximum(rng.integers(-2, 3, shape), 0).astype(np.float64)


@st.composite
def pool_problems(draw, max_size: int) -> dict:
    """Kernels 1-7 (non-square too), stride None (= kernel) or 1-3, so windows with and without
    overlap, padding 0..kernel//2, 1-3 images of 1-4 channels; normal or tied values, in NCHW or
    batch-last memory order."""
    kh, kw = draw(st.integers(1, 7)), draw(st.integers(1, 7))
    stride = draw(st.none() | st.integers(1, 3))
    padding = draw(st.integers(0, min(kh, kw) // 2))
    height = draw(st.integers(max(1, kh - 2 * padding), max(kh, max_size)))
    width = draw(st.integers(max(1, kw - 2 * padding), max(kw, max_size)))
    shape = (draw(st.integers(1, 3)), draw(st.integers(1, 4)), height, width)
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    x = tied(rng, shape) if draw(st.booleans()) else rng.standard_normal(shape)
    return {
        "x": batch_last(x) if draw(st.booleans()) else x,
        "kernel": (kh, kw),
        "stride": stride,
        "padding": padding,
        "seed": int(rng.integers(2**32)),
    }


def torch_pool(kind: str, problem: dict, dy_seed: int = 0) -> tuple[np.ndarray, ...]:
    """torch's y, dx (autograd) and the random dy (N, C, Hout, Wout) it used."""
    x = torch.tensor(problem["x"], requires_grad=True)
    y = TORCH[kind](x, problem["kernel"], problem["stride"], problem["padding"])
    dy = np.random.default_rng(dy_seed).standard_normal(tuple(y.shape)).astype(problem["x"].dtype)
    y.backward(torch.from_numpy(dy))
    return y.detach().numpy(), x.grad.numpy(), dy


def run_op(kind: str, variant: str, problem: dict, dy: np.ndarray) -> tuple[np.ndarray, ...]:
    forward, backward = OPS[kind, variant]
    geometry = (problem["kernel"], problem["stride"], problem["padding"])
    return forward(problem["x"], *geometry), backward(dy, problem["x"], *geometry)


def assert_bitwise(actual: np.ndarray, expected: np.ndarray, name: str) -> None:
    assert actual.dtype == expected.dtype, name
    np.testing.assert_array_equal(actual, expected, err_msg=name, strict=True)


@pytest.mark.parametrize(("kind", "variant"), OPS)
@settings(max_examples=40, deadline=None)
@given(data=st.data())
def test_forward_and_backward_equal_torch_bitwise(kind, variant, data):
    """Both variants do torch's arithmetic in torch's order: equal bit for bit in float64,
    overlapping windows (one pixel receiving several gradients) included."""
    problem = data.draw(pool_problems(MAX_IMAGE_SIZE[variant]))
    y, dx, dy = torch_pool(kind, problem, problem["seed"])
    actual_y, actual_dx = run_op(kind, variant, problem, dy)
    assert_bitwise(actual_y, y, "y")
    assert_bitwise(actual_dx, dx, "dx")


@settings(max_examples=40, deadline=None)
@given(problem=pool_problems(MAX_IMAGE_SIZE["strided"]))
def test_max_indices_equal_torchs(problem):
    geometry = (problem["kernel"], problem["stride"], problem["padding"])
    _, expected = torch.nn.functional.max_pool2d(
        torch.tensor(problem["x"]), *geometry, return_indices=True
    )
    indices = maxpool2d_indices(problem["x"], *geometry)
    assert indices.dtype == np.int64
    np.testing.assert_array_equal(indices, expected.numpy(), strict=True)


# (kernel, stride, padding): the max winners' indices differ between tie rules only if windows
# tie; with overlap (stride < kernel) one pixel wins several windows and adds their gradients
TIE_GEOMETRIES = [(2, None, 0), (2, 1, 0), (3, 1, 1), (3, 2, 1), ((3, 2), 1, 1), (5, 2, 2)]


@pytest.mark.parametrize("variant", ["loops", "strided"])
@pytest.mark.parametrize(("kernel", "stride", "padding"), TIE_GEOMETRIES)
def test_max_ties_route_gradients_as_torch(variant, kernel, stride, padding):
    """Post-ReLU zeros and small integers: most windows hold several maxima.  Every gradient
    lands where torch's lands, to the bit; the data is such that a different tie rule fails."""
    problem = {
        "x": tied(np.random.default_rng(7), (2, 3, 8, 9)),
        "kernel": kernel,
        "stride": stride,
        "padding": padding,
    }
    y, dx, dy = torch_pool("max", problem)
    actual_y, actual_dx = run_op("max", variant, problem, dy)
    assert_bitwise(actual_y, y, "y")
    assert_bitwise(actual_dx, dx, "dx")
    # the test has teeth: many windows tie, and routing to the last maximum instead of the
    # first sends many gradients elsewhere; with overlap some pixels win 3 or more windows
    ties, last_dx = last_maximum_routing(problem, dy)
    assert ties > 0.4
    assert np.count_nonzero(last_dx != dx) > dx.size // 10
    if stride is not None and stride < min(np.broadcast_to(kernel, 2)):
        routed = maxpool2d_backward_strided(np.ones_like(dy), problem["x"], kernel, stride, padding)
        assert routed.max() >= 3


def last_maximum_routing(problem: dict, dy: np.ndarray) -> tuple[float, np.ndarray]:
    """The fraction of windows with several maxima, and dx under the wrong tie rule (the last
    maximum of each window wins), by torch's unfold and fold."""
    kh, kw = np.broadcast_to(problem["kernel"], 2).tolist()
    stride, padding = problem["stride"] or (kh, kw), problem["padding"]
    n_images, channels, height, width = problem["x"].shape
    padded = torch.nn.functional.pad(torch.tensor(problem["x"]), (padding,) * 4, value=-np.inf)
    cols = torch.nn.functional.unfold(padded, (kh, kw), stride=stride)
    cols = cols.reshape(n_images, channels, kh * kw, -1)
    ties = ((cols == cols.max(2, keepdim=True).values).sum(2) > 1).double().mean().item()
    last = kh * kw - 1 - cols.flip(2).argmax(2, keepdim=True)  # argmax: the first maximum
    onehot = torch.zeros_like(cols).scatter_(2, last, torch.tensor(dy).reshape(*last.shape))
    dx = torch.nn.functional.fold(
        onehot.reshape(n_images, -1, cols.shape[-1]),
        padded.shape[2:],
        (kh, kw),
        stride=stride,
    )
    return ties, dx[..., padding : padding + height, padding : padding + width].numpy()


@pytest.mark.parametrize("variant", ["loops", "strided"])
def test_max_special_values_as_torch(variant):
    """A NaN always wins (the last NaN of a window, output NaN); a window of -inf (real pixels)
    routes its gradient to its first real pixel, never to the padding."""
    nan, inf = np.nan, np.inf
    cases = [
        (np.array([[nan, 1.0, nan], [2.0, nan, 0.0], [3.0, 4.0, 5.0]]), 2, 1, 0),
        (np.array([[1.0, nan, nan], [-inf, 2.0, 3.0], [nan, 0.0, -inf]]), 2, 1, 1),
        (np.full((3, 4), -inf), 3, 2, 1),
        (np.array([[-inf, -inf], [-inf, 1.0]]), 2, 1, 1),
    ]
    forward, backward = OPS["max", variant]
    for values, kernel, stride, padding in cases:
        problem = {"x": values[None, None], "kernel": kernel, "stride": stride, "padding": padding}
        y, dx, dy = torch_pool("max", problem)
        np.testing.assert_array_equal(forward(problem["x"], kernel, stride, padding), y)
        assert_bitwise(backward(dy, problem["x"], kernel, stride, padding), dx, "dx")


@pytest.mark.parametrize("variant", ["loops", "strided"])
def test_avg_counts_padding_in_the_divisor(variant):
    """count_include_pad (torch's default): a 2x2 window holding one real pixel averages it
    with three zeros, by hand."""
    x = np.array([[[[4.0, 8.0], [12.0, 16.0]]]])
    forward, backward = OPS["avg", variant]
    np.testing.assert_array_equal(forward(x, 2, 2, 1), [[[[1.0, 2.0], [3.0, 4.0]]]], strict=False)
    np.testing.assert_array_equal(forward(x, 2, 1, 0), [[[[10.0]]]])
    np.testing.assert_array_equal(
        backward(np.ones((1, 1, 2, 2)), x, 2, 2, 1), np.full(x.shape, 0.25)
    )


@pytest.mark.parametrize(("kind", "variant"), OPS)
def test_float32_keeps_its_dtype(kind, variant):
    """float32 in, float32 out; the strided variant computes in float32 in torch's order (equal
    bit for bit), the loops in double precision (equal to float32 rounding)."""
    problem = {
        "x": np.random.default_rng(3).standard_normal((2, 3, 9, 8)).astype(np.float32),
        "kernel": 3,
        "stride": 2,
        "padding": 1,
    }
    y, dx, dy = torch_pool(kind, problem)
    actual_y, actual_dx = run_op(kind, variant, problem, dy)
    assert actual_y.dtype == actual_dx.dtype == np.float32
    if variant == "strided":
        assert_bitwise(actual_y, y, "y")
        assert_bitwise(actual_dx, dx, "dx")
    else:
        assert max_norm_relative_error(actual_y, y) <= 1e-6
        assert max_norm_relative_error(actual_dx, dx) <= 1e-6


def _pool_args(**changes) -> dict:
    args = {"x": np.ones((2, 3, 6, 6)), "kernel": 3, "stride": 2, "padding": 1}
    args.update(changes)
    return args


BAD_POOL_ARGUMENTS = {
    "padding over half the kernel": ({"padding": 2}, r"padding 2 is more than half the 3x3 kernel"),
    "padding over half of kw": (
        {"kernel": (4, 3), "padding": 2},
        r"padding 2 is more than half the 4x3 kernel",
    ),
    "window larger than input": (
        {"x": np.ones((2, 3, 2, 2)), "kernel": 5},
        r"padding 1 leaves no output for a 2x2 input and a 5x5 kernel",
    ),
    "kernel 0": ({"kernel": 0}, r"kh must be an integer >= 1, got 0"),
    "kernel triple": ({"kernel": (2, 2, 2)}, r"kernel must be an integer or a pair"),
    "stride 0": ({"stride": 0}, r"stride must be an integer >= 1, got 0"),
    "float stride": ({"stride": 1.5}, r"stride must be an integer >= 1, got 1.5"),
    "negative padding": ({"padding": -1}, r"padding must be an integer >= 0, got -1"),
    "3-D x": ({"x": np.ones((3, 6, 6))}, r"x must be 4-D \(N, C, H, W\), got 3-D"),
    "integer x": ({"x": np.ones((2, 3, 6, 6), int)}, r"x must hold floating-point values"),
}


@pytest.mark.parametrize(("kind", "variant"), OPS)
@pytest.mark.parametrize("case", BAD_POOL_ARGUMENTS)
def test_forward_rejects_bad_arguments(kind, variant, case):
    changes, message = BAD_POOL_ARGUMENTS[case]
    with pytest.raises(ValueError, match=message):
        OPS[kind, variant][0](**_pool_args(**changes))


BAD_BACKWARD_ARGUMENTS = {
    "dy shape": (
        {"dy": np.ones((2, 3, 4, 3))},
        r"dy has shape \(2, 3, 4, 3\), expected \(2, 3, 3, 3\)",
    ),
    "dy dtype": ({"dy": np.ones((2, 3, 3, 3), np.float32)}, r"mixed dtypes \(dy is float32"),
    "dy 3-D": ({"dy": np.ones((3, 3, 3))}, r"dy must be 4-D"),
    "padding over half the kernel": ({"padding": 2}, r"padding 2 is more than half"),
}


@pytest.mark.parametrize(("kind", "variant"), OPS)
@pytest.mark.parametrize("case", BAD_BACKWARD_ARGUMENTS)
def test_backward_rejects_bad_arguments(kind, variant, case):
    changes, message = BAD_BACKWARD_ARGUMENTS[case]
    args = _pool_args(dy=np.ones((2, 3, 3, 3)))
    args.update(changes)
    with pytest.raises(ValueError, match=message):
        OPS[kind, variant][1](**args)
