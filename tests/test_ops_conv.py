"""Convolution ops, both variants: against torch in float64, finite differences, each other."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from finite_differences import elementwise_relative_error
from hypothesis import given, settings
from hypothesis import strategies as st

from cnnbench.common.numerics import central_difference, max_norm_relative_error
from cnnbench.ops import (
    col2im,
    conv2d_backward_im2col,
    conv2d_backward_loops,
    conv2d_im2col,
    conv2d_im2col_with_columns,
    conv2d_loops,
    im2col,
)

VARIANTS = {
    "loops": (conv2d_loops, conv2d_backward_loops),
    "im2col": (conv2d_im2col, conv2d_backward_im2col),
}
# the loops variant runs at Python speed: smaller images keep the property tests fast
MAX_IMAGE_SIZE = {"loops": 8, "im2col": 13}
TORCH_TOLERANCE = 1e-10
FD_TOLERANCE = 1e-7
# conv is linear in each argument, so a central difference has no truncation error at any
# step; a large step keeps round-off (eps * |loss| / step) far below the tolerance.
FD_STEP = 1e-3


@st.composite
def conv_problems(draw, max_size: int) -> dict:
    """Random float64 x, w, b, dy with kernels 1-5 (non-square too), stride 1-3, padding 0-3."""
    kh, kw = draw(st.integers(1, 5)), draw(st.integers(1, 5))
    stride, padding = draw(st.integers(1, 3)), draw(st.integers(0, 3))
    height = draw(st.integers(max(1, kh - 2 * padding), max_size))
    width = draw(st.integers(max(1, kw - 2 * padding), max_size))
    n, channels, out_channels = (
        draw(st.integers(1, 4)),
        draw(st.integers(1, 5)),
        draw(st.integers(1, 5)),
    )
    seed = draw(st.integers(0, 2**32 - 1))
    return fixed_problem(
        n, channels, out_channels, (height, width), (kh, kw), stride, padding, seed
    )


def torch_conv(problem: dict) -> tuple[np.ndarray, ...]:
    """torch's y, dx, dw, db for ``problem`` (autograd, float64)."""
    x, w, b = (torch.tensor(problem[k], requires_grad=True) for k in ("x", "w", "b"))
    y = torch.nn.functional.conv2d(x, w, b, stride=problem["stride"], padding=problem["padding"])
    y.backward(torch.from_numpy(problem["dy"]))
    return y.detach().numpy(), x.grad.numpy(), w.grad.numpy(), b.grad.numpy()


def run_variant(variant: str, problem: dict) -> tuple[np.ndarray, ...]:
    """y, dx, dw, db of one variant."""
    forward, backward = VARIANTS[variant]
    geometry = {"stride": problem["stride"], "padding": problem["padding"]}
    y = forward(problem["x"], problem["w"], problem["b"], **geometry)
    return (y, *backward(problem["dy"], problem["x"], problem["w"], **geometry))


def fixed_problem(n, channels, out_channels, size, kernel, stride, padding, seed=0) -> dict:
    rng = np.random.default_rng(seed)
    height, width = size
    kh, kw = kernel
    out_h = (height + 2 * padding - kh) // stride + 1
    out_w = (width + 2 * padding - kw) // stride + 1
    return {
        "x": rng.standard_normal((n, channels, height, width)),
        "w": rng.standard_normal((out_channels, channels, kh, kw)),
        "b": rng.standard_normal(out_channels),
        "dy": rng.standard_normal((n, out_channels, out_h, out_w)),
        "stride": stride,
        "padding": padding,
    }


@pytest.mark.parametrize("variant", VARIANTS)
@settings(max_examples=30, deadline=None)
@given(data=st.data())
def test_forward_and_gradients_match_torch(variant, data):
    problem = data.draw(conv_problems(MAX_IMAGE_SIZE[variant]))
    for name, actual, expected in zip(
        ("y", "dx", "dw", "db"), run_variant(variant, problem), torch_conv(problem), strict=True
    ):
        assert actual.dtype == np.float64, name
        assert max_norm_relative_error(actual, expected) <= TORCH_TOLERANCE, name


@pytest.mark.parametrize("variant", VARIANTS)
@pytest.mark.parametrize(
    ("size", "channels", "out_channels"),
    [((28, 28), 1, 4), ((14, 14), 3, 4), ((7, 7), 4, 5)],
    ids=["28to14", "14to7", "7to4"],
)
def test_network_geometry_matches_torch(variant, size, channels, out_channels):
    """Kernel 3, stride 2, padding 1: overlapping windows, and (H + 2 - 3) not divisible by 2."""
    problem = fixed_problem(2, channels, out_channels, size, (3, 3), stride=2, padding=1)
    results = run_variant(variant, problem)
    assert results[0].shape == (2, out_channels, (size[0] + 1) // 2, (size[1] + 1) // 2)
    for name, actual, expected in zip(
        ("y", "dx", "dw", "db"), results, torch_conv(problem), strict=True
    ):
        assert max_norm_relative_error(actual, expected) <= TORCH_TOLERANCE, name


@settings(max_examples=30, deadline=None)
@given(problem=conv_problems(MAX_IMAGE_SIZE["loops"]))
def test_loops_and_im2col_agree_to_round_off(problem):
    for name, loops, im2col_result in zip(
        ("y", "dx", "dw", "db"),
        run_variant("loops", problem),
        run_variant("im2col", problem),
        strict=True,
    ):
        assert max_norm_relative_error(loops, im2col_result) <= 1e-13, name


@pytest.mark.parametrize("variant", VARIANTS)
@pytest.mark.parametrize(
    ("kernel", "stride", "padding", "size"),
    [((3, 3), 2, 1, (7, 7)), ((2, 3), 3, 0, (8, 7)), ((1, 1), 1, 2, (3, 4))],
)
def test_gradients_match_central_differences(variant, kernel, stride, padding, size):
    problem = fixed_problem(2, 2, 3, size, kernel, stride, padding, seed=1)
    forward, _ = VARIANTS[variant]
    _, *analytic = run_variant(variant, problem)

    def loss() -> float:  # <y, dy>: its gradient is exactly the backward of dy
        y = forward(problem["x"], problem["w"], problem["b"], stride=stride, padding=padding)
        return float(np.sum(y * problem["dy"]))

    for name, gradient in zip(("x", "w", "b"), analytic, strict=True):
        array = problem[name]
        numeric = np.array(
            [central_difference(loss, array, index, FD_STEP) for index in np.ndindex(array.shape)]
        ).reshape(array.shape)
        assert np.abs(numeric).max() > 0.1, name  # a real gradient, not all zeros
        assert elementwise_relative_error(gradient, numeric) < FD_TOLERANCE, name


@pytest.mark.parametrize("variant", VARIANTS)
def test_worked_example(variant):
    x = np.arange(1, 33, dtype=float).reshape(1, 2, 4, 4)
    y = VARIANTS[variant][0](x, np.ones((2, 2, 2, 2)), np.array([1.0, 2.0]), stride=2)
    expected = [[[[93, 109], [157, 173]], [[94, 110], [158, 174]]]]
    np.testing.assert_array_equal(y, np.array(expected, dtype=float))


@pytest.mark.parametrize("variant", VARIANTS)
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_dtype_is_preserved(variant, dtype):
    problem = fixed_problem(2, 3, 4, (7, 6), (3, 2), stride=2, padding=1)
    cast = {k: v.astype(dtype) if isinstance(v, np.ndarray) else v for k, v in problem.items()}
    results = run_variant(variant, cast)
    assert [r.dtype for r in results] == [np.dtype(dtype)] * 4
    cols = im2col(cast["x"], 3, 2, stride=2, padding=1)
    assert cols.dtype == dtype and col2im(cols, cast["x"].shape, 3, 2, 2, 1).dtype == dtype
    # and the values are the float64 ones, to the dtype's precision
    for actual, expected in zip(results, run_variant(variant, problem), strict=True):
        assert max_norm_relative_error(actual, expected) <= (1e-5 if dtype == np.float32 else 0)


def test_im2col_columns_and_col2im_adjoint():
    x = np.arange(1, 33, dtype=float).reshape(1, 2, 4, 4)
    cols = im2col(x, 2, 2, stride=2)
    assert cols.shape == (2 * 2 * 2, 4)
    # first window (top-left): channel 0 rows [1, 2], [5, 6], then channel 1 [17, 18], [21, 22]
    np.testing.assert_array_equal(cols[:, 0], [1, 2, 5, 6, 17, 18, 21, 22])
    # col2im is im2col's adjoint: <im2col(x), c> == <x, col2im(c)>, overlaps and padding included
    rng = np.random.default_rng(2)
    x = rng.standard_normal((2, 3, 9, 8))
    cols = rng.standard_normal(im2col(x, 3, 2, stride=2, padding=2).shape)
    left = np.sum(im2col(x, 3, 2, stride=2, padding=2) * cols)
    right = np.sum(x * col2im(cols, x.shape, 3, 2, stride=2, padding=2))
    assert abs(left - right) <= 1e-12 * abs(left)
    with pytest.raises(ValueError, match="cols has shape"):
        col2im(cols[:, :-1], x.shape, 3, 2, stride=2, padding=2)


def im2col_by_windows(x, kh, kw, stride, padding) -> np.ndarray:
    """im2col by its definition: each offset's window taps of the zero padded image."""
    n, channels, height, width = x.shape
    out_h = (height + 2 * padding - kh) // stride + 1
    out_w = (width + 2 * padding - kw) // stride + 1
    padded = np.pad(x, ((0, 0), (0, 0), (padding, padding), (padding, padding)))
    cols = np.empty((channels, kh, kw, out_h, out_w, n), x.dtype)
    for ki in range(kh):
        for kj in range(kw):
            rows = slice(ki, ki + (out_h - 1) * stride + 1, stride)
            columns = slice(kj, kj + (out_w - 1) * stride + 1, stride)
            cols[:, ki, kj] = padded[:, :, rows, columns].transpose(1, 2, 3, 0)
    return cols.reshape(channels * kh * kw, -1)


@settings(max_examples=60, deadline=None)
@given(problem=conv_problems(13), batch_last=st.booleans())
def test_im2col_copies_the_windows_of_its_definition(problem, batch_last):
    """Every tap, the padding's zeros included, from an NCHW input or a batch-last view of one
    (the layout the convolution hands the next layer)."""
    x, (_, _, kh, kw) = problem["x"], problem["w"].shape
    if batch_last:
        x = np.ascontiguousarray(x.transpose(1, 2, 3, 0)).transpose(3, 0, 1, 2)
    geometry = (kh, kw, problem["stride"], problem["padding"])
    np.testing.assert_array_equal(im2col(x, *geometry), im2col_by_windows(x, *geometry))


def col2im_by_adding(cols, x_shape, kh, kw, stride, padding) -> np.ndarray:
    """col2im by its definition: every column added onto its window of a zero padded image,
    offsets in row-major order, the padding cut off at the end."""
    n, channels, height, width = x_shape
    out_h = (height + 2 * padding - kh) // stride + 1
    out_w = (width + 2 * padding - kw) // stride + 1
    blocks = cols.reshape(channels, kh, kw, out_h, out_w, n)
    padded = np.zeros((channels, height + 2 * padding, width + 2 * padding, n), cols.dtype)
    for ki in range(kh):
        for kj in range(kw):
            rows = slice(ki, ki + (out_h - 1) * stride + 1, stride)
            columns = slice(kj, kj + (out_w - 1) * stride + 1, stride)
            padded[:, rows, columns] += blocks[:, ki, kj]
    return padded[:, padding : padding + height, padding : padding + width].transpose(3, 0, 1, 2)


@settings(max_examples=60, deadline=None)
@given(problem=conv_problems(13))
def test_col2im_gives_the_sums_of_its_definition_bit_for_bit(problem):
    """Training's float32 weights rest on these bits: the first offset reaching a pixel is
    copied, the others added in row-major order, as onto zeros; pixels no window reaches are 0."""
    x, (_, _, kh, kw) = problem["x"], problem["w"].shape
    geometry = (kh, kw, problem["stride"], problem["padding"])
    rng = np.random.default_rng(int(abs(x.flat[0]) * 1e6))
    cols = rng.standard_normal(im2col(x, *geometry).shape).astype(np.float32)
    actual, expected = col2im(cols, x.shape, *geometry), col2im_by_adding(cols, x.shape, *geometry)
    assert actual.dtype == np.float32
    np.testing.assert_array_equal(actual.view(np.uint32), expected.view(np.uint32))


@pytest.mark.parametrize("variant", VARIANTS)
@settings(max_examples=20, deadline=None)
@given(data=st.data())
def test_backward_without_the_input_gradient_gives_the_same_weight_gradients(variant, data):
    """Training skips the first layer's dx: None, and dw, db the same bits as with it."""
    problem = data.draw(conv_problems(MAX_IMAGE_SIZE[variant]))
    backward = VARIANTS[variant][1]
    args = (problem["dy"], problem["x"], problem["w"], problem["stride"], problem["padding"])
    dx, dw, db = backward(*args, input_gradient=False)
    full = backward(*args)
    assert dx is None and full[0].shape == problem["x"].shape
    np.testing.assert_array_equal(dw, full[1])
    np.testing.assert_array_equal(db, full[2])
    assert np.abs(db).max() > 0  # real values (dw is 0 where every window lies in the padding)


@settings(max_examples=20, deadline=None)
@given(problem=conv_problems(MAX_IMAGE_SIZE["im2col"]))
def test_backward_reusing_the_forwards_columns_is_the_same(problem):
    """Training keeps each forward's column matrix for the backward: same results, bit for bit."""
    x, w, b, dy = (problem[k] for k in ("x", "w", "b", "dy"))
    geometry = (problem["stride"], problem["padding"])
    y, kept = conv2d_im2col_with_columns(x, w, b, *geometry)
    np.testing.assert_array_equal(y, conv2d_im2col(x, w, b, *geometry))
    np.testing.assert_array_equal(kept["cols"], im2col(x, *w.shape[2:], *geometry))
    reused = conv2d_backward_im2col(dy, x, w, *geometry, **kept)
    for actual, expected in zip(reused, conv2d_backward_im2col(dy, x, w, *geometry), strict=True):
        np.testing.assert_array_equal(actual, expected)
    with pytest.raises(ValueError, match=r"cols is float64 .* expected x's column matrix"):
        conv2d_backward_im2col(dy, x, w, *geometry, cols=kept["cols"][:, 1:])
    with pytest.raises(ValueError, match="cols is float32"):
        conv2d_backward_im2col(dy, x, w, *geometry, cols=kept["cols"].astype(np.float32))


def _conv_args(**changes) -> dict:
    rng = np.random.default_rng(3)
    args = {
        "x": rng.standard_normal((2, 3, 6, 6)),
        "w": rng.standard_normal((4, 3, 3, 3)),
        "b": rng.standard_normal(4),
        "stride": 2,
        "padding": 1,
    }
    args.update(changes)
    return args


BAD_CONV_ARGUMENTS = {
    "channels": ({"w": np.ones((4, 2, 3, 3))}, r"w expects 2 input channels .* x has 3"),
    "bias length": ({"b": np.ones(5)}, r"b has length 5, expected 4"),
    "no output": ({"x": np.ones((2, 3, 2, 2)), "padding": 0}, r"padding 0 leaves no output"),
    "3-D x": ({"x": np.ones((3, 6, 6))}, r"x must be 4-D \(N, C, H, W\), got 3-D"),
    "3-D w": ({"w": np.ones((4, 3, 3))}, r"w must be 4-D \(O, C, kh, kw\)"),
    "stride 0": ({"stride": 0}, r"stride must be an integer >= 1, got 0"),
    "float stride": ({"stride": 1.5}, r"stride must be an integer >= 1, got 1.5"),
    "negative padding": ({"padding": -1}, r"padding must be an integer >= 0, got -1"),
    "mixed dtypes": (
        {"w": np.ones((4, 3, 3, 3), np.float32)},
        r"mixed dtypes \(x is float64, w is float32\)",
    ),
    "integer x": (
        {"x": np.ones((2, 3, 6, 6), int)},
        r"x must hold floating-point values, got dtype int64",
    ),
    "list x": ({"x": [[[[1.0]]]]}, r"x must be a NumPy array \(N, C, H, W\), got list"),
    "empty x": ({"x": np.ones((0, 3, 6, 6))}, r"x must not be empty"),
}


@pytest.mark.parametrize("variant", VARIANTS)
@pytest.mark.parametrize("case", BAD_CONV_ARGUMENTS)
def test_forward_rejects_bad_arguments(variant, case):
    changes, message = BAD_CONV_ARGUMENTS[case]
    with pytest.raises(ValueError, match=message):
        VARIANTS[variant][0](**_conv_args(**changes))


BAD_BACKWARD_ARGUMENTS = {
    "dy shape": (
        {"dy": np.ones((2, 4, 4, 3))},
        r"dy has shape \(2, 4, 4, 3\), expected \(2, 4, 3, 3\)",
    ),
    "dy dtype": ({"dy": np.ones((2, 4, 3, 3), np.float32)}, r"mixed dtypes \(dy is float32"),
    "dy 3-D": ({"dy": np.ones((4, 3, 3))}, r"dy must be 4-D"),
    "channels": ({"w": np.ones((4, 2, 3, 3))}, r"w expects 2 input channels"),
    "negative padding": ({"padding": -2}, r"padding must be an integer >= 0, got -2"),
    "stride 0": ({"stride": 0}, r"stride must be an integer >= 1"),
}


@pytest.mark.parametrize("variant", VARIANTS)
@pytest.mark.parametrize("case", BAD_BACKWARD_ARGUMENTS)
def test_backward_rejects_bad_arguments(variant, case):
    changes, message = BAD_BACKWARD_ARGUMENTS[case]
    args = _conv_args(dy=np.ones((2, 4, 3, 3)))
    del args["b"]
    args.update(changes)
    with pytest.raises(ValueError, match=message):
        VARIANTS[variant][1](**args)
