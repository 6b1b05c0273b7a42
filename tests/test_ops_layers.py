"""Linear (both variants), ReLU, softmax and cross-entropy: torch, finite differences, edge cases."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from finite_differences import elementwise_relative_error
from hypothesis import given, settings
from hypothesis import strategies as st

from cnnbench.common.numerics import central_difference, max_norm_relative_error
from cnnbench.ops import (
    cross_entropy,
    cross_entropy_backward,
    linear,
    linear_backward,
    linear_backward_loops,
    linear_loops,
    log_softmax,
    relu,
    relu_backward,
    softmax,
)

LINEAR_VARIANTS = {
    "loops": (linear_loops, linear_backward_loops),
    "im2col": (linear, linear_backward),
}
TORCH_TOLERANCE = 1e-10
FD_TOLERANCE = 1e-7


def linear_problem(n: int, features: int, outputs: int, seed: int, dtype=np.float64) -> dict:
    rng = np.random.default_rng(seed)
    return {
        "x": rng.standard_normal((n, features)).astype(dtype),
        "w": rng.standard_normal((outputs, features)).astype(dtype),
        "b": rng.standard_normal(outputs).astype(dtype),
        "dy": rng.standard_normal((n, outputs)).astype(dtype),
    }


def torch_grads(function, *arrays: np.ndarray, dy: np.ndarray) -> tuple[np.ndarray, ...]:
    """torch's output of ``function(*arrays)`` and the gradients of <output, dy> (float64)."""
    tensors = [torch.tensor(a, requires_grad=True) for a in arrays]
    y = function(*tensors)
    y.backward(torch.from_numpy(dy))
    return (y.detach().numpy(), *(t.grad.numpy() for t in tensors))


# ---------------------------------------------------------------------------- linear


@pytest.mark.parametrize("variant", LINEAR_VARIANTS)
@settings(max_examples=25, deadline=None)
@given(
    n=st.integers(1, 4),
    features=st.integers(1, 40),
    outputs=st.integers(1, 12),
    seed=st.integers(0, 2**32 - 1),
)
def test_linear_matches_torch(variant, n, features, outputs, seed):
    p = linear_problem(n, features, outputs, seed)
    forward, backward = LINEAR_VARIANTS[variant]
    actual = (forward(p["x"], p["w"], p["b"]), *backward(p["dy"], p["x"], p["w"]))
    expected = torch_grads(torch.nn.functional.linear, p["x"], p["w"], p["b"], dy=p["dy"])
    for name, a, e in zip(("y", "dx", "dw", "db"), actual, expected, strict=True):
        assert max_norm_relative_error(a, e) <= TORCH_TOLERANCE, name


def test_linear_backward_gives_dx_batch_last():
    """dx in (in, N) memory: the im2col convolution before a linear layer reads its gradient
    in that layout without a transposing copy."""
    p = linear_problem(5, 12, 3, seed=2)
    dx = linear_backward(p["dy"], p["x"], p["w"])[0]
    assert dx.shape == (5, 12) and dx.T.flags.c_contiguous
    np.testing.assert_array_equal(dx, p["dy"] @ p["w"])


def test_linear_variants_agree_to_round_off():
    p = linear_problem(3, 2048, 25, seed=4)
    loops = (linear_loops(p["x"], p["w"], p["b"]), *linear_backward_loops(p["dy"], p["x"], p["w"]))
    vectorized = (linear(p["x"], p["w"], p["b"]), *linear_backward(p["dy"], p["x"], p["w"]))
    for name, a, e in zip(("y", "dx", "dw", "db"), loops, vectorized, strict=True):
        assert max_norm_relative_error(a, e) <= 1e-13, name


@pytest.mark.parametrize("variant", LINEAR_VARIANTS)
def test_linear_gradients_match_central_differences(variant):
    p = linear_problem(3, 5, 4, seed=5)
    forward, backward = LINEAR_VARIANTS[variant]

    def loss() -> float:
        return float(np.sum(forward(p["x"], p["w"], p["b"]) * p["dy"]))

    for name, gradient in zip(("x", "w", "b"), backward(p["dy"], p["x"], p["w"]), strict=True):
        array = p[name]
        # linear in each argument: no truncation error, so a large step only cuts round-off
        numeric = np.array(
            [central_difference(loss, array, index, 1e-3) for index in np.ndindex(array.shape)]
        ).reshape(array.shape)
        assert np.abs(numeric).max() > 0.1, name
        assert elementwise_relative_error(gradient, numeric) < FD_TOLERANCE, name


BAD_LINEAR_ARGUMENTS = {
    "features": ({"w": np.ones((4, 6))}, r"w expects 6 input features .* x has 5"),
    "bias length": ({"b": np.ones(3)}, r"b has length 3, expected 4"),
    "1-D x": ({"x": np.ones(5)}, r"x must be 2-D \(N, in\), got 1-D"),
    "mixed dtypes": (
        {"b": np.ones(4, np.float32)},
        r"mixed dtypes \(x is float64, w is float64, b is float32\)",
    ),
}


@pytest.mark.parametrize("variant", LINEAR_VARIANTS)
@pytest.mark.parametrize("case", BAD_LINEAR_ARGUMENTS)
def test_linear_rejects_bad_arguments(variant, case):
    changes, message = BAD_LINEAR_ARGUMENTS[case]
    p = linear_problem(3, 5, 4, seed=6)
    del p["dy"]
    p.update(changes)
    with pytest.raises(ValueError, match=message):
        LINEAR_VARIANTS[variant][0](**p)


@pytest.mark.parametrize("variant", LINEAR_VARIANTS)
@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"dy": np.ones((3, 5))}, r"dy has shape \(3, 5\), expected \(3, 4\)"),
        ({"dy": np.ones((3, 4), np.float32)}, r"mixed dtypes \(dy is float32"),
        ({"w": np.ones((4, 6))}, r"w expects 6 input features"),
    ],
)
def test_linear_backward_rejects_bad_arguments(variant, changes, message):
    p = linear_problem(3, 5, 4, seed=7)
    del p["b"]
    p.update(changes)
    with pytest.raises(ValueError, match=message):
        LINEAR_VARIANTS[variant][1](**p)


# ---------------------------------------------------------------------------- ReLU


def test_relu_matches_torch_and_differences():
    rng = np.random.default_rng(8)
    # bounded away from the kink at 0, where a difference quotient is no derivative
    x = rng.choice([-1.0, 1.0], (3, 4, 5)) * rng.uniform(0.1, 2.0, (3, 4, 5))
    dy = rng.standard_normal(x.shape)
    y, dx = torch_grads(torch.relu, x, dy=dy)
    np.testing.assert_array_equal(relu(x), y)
    np.testing.assert_array_equal(relu_backward(dy, x), dx)
    numeric = np.array(
        [
            central_difference(lambda: float(np.sum(relu(x) * dy)), x, index, 1e-6)
            for index in np.ndindex(x.shape)
        ]
    ).reshape(x.shape)
    assert elementwise_relative_error(relu_backward(dy, x), numeric) < FD_TOLERANCE


def test_relu_gradient_at_zero_is_zero_like_torch():
    x = np.array([-1.0, 0.0, 2.0])
    np.testing.assert_array_equal(relu(x), [0.0, 0.0, 2.0])
    np.testing.assert_array_equal(relu_backward(np.ones(3), x), [0.0, 0.0, 1.0])


def test_relu_in_place_and_its_backward_from_the_output():
    """The network computes ReLU over its input and keeps only the output for the backward."""
    rng = np.random.default_rng(9)
    x = rng.standard_normal((4, 3, 5))
    x[0, 0, :2] = 0.0  # the kink: the subgradient 0 from the input and from the output alike
    dy = rng.standard_normal(x.shape)
    expected, expected_dx = relu(x), relu_backward(dy, x)
    in_place = x.copy()
    assert relu(in_place, out=in_place) is in_place
    np.testing.assert_array_equal(in_place, expected)
    np.testing.assert_array_equal(relu_backward(dy, in_place), expected_dx)
    assert 0 < np.count_nonzero(expected_dx) < x.size


def test_relu_rejects_bad_arguments():
    with pytest.raises(ValueError, match=r"dy has shape \(2,\), expected \(3,\)"):
        relu_backward(np.ones(2), np.ones(3))
    with pytest.raises(ValueError, match=r"mixed dtypes \(dy is float32, x is float64\)"):
        relu_backward(np.ones(3, np.float32), np.ones(3))
    with pytest.raises(ValueError, match=r"x must hold floating-point values"):
        relu(np.arange(3))


# ---------------------------------------------------------------------------- softmax, loss


@settings(max_examples=25, deadline=None)
@given(
    n=st.integers(1, 8),
    classes=st.integers(2, 12),
    scale=st.sampled_from([0.1, 3.0, 50.0]),
    seed=st.integers(0, 2**32 - 1),
)
def test_softmax_and_cross_entropy_match_torch(n, classes, scale, seed):
    rng = np.random.default_rng(seed)
    logits = rng.standard_normal((n, classes)) * scale
    labels = rng.integers(0, classes, n)
    z = torch.tensor(logits, requires_grad=True)
    assert (
        max_norm_relative_error(softmax(logits), torch.softmax(z, -1).detach().numpy())
        <= TORCH_TOLERANCE
    )
    assert (
        max_norm_relative_error(log_softmax(logits), torch.log_softmax(z, -1).detach().numpy())
        <= TORCH_TOLERANCE
    )
    loss = torch.nn.functional.cross_entropy(z, torch.from_numpy(labels))
    loss.backward()
    # The loss is a difference of logits (z_label - logsumexp z): rounding at the logits' scale
    # bounds its absolute error, which dominates when the loss is tiny (confident and right).
    rounding = 4 * np.finfo(np.float64).eps * np.abs(logits).max()
    assert abs(cross_entropy(logits, labels) - loss.item()) <= (
        TORCH_TOLERANCE * abs(loss.item()) + rounding
    )
    assert (
        max_norm_relative_error(cross_entropy_backward(logits, labels), z.grad.numpy())
        <= TORCH_TOLERANCE
    )


def test_cross_entropy_gradient_matches_central_differences():
    rng = np.random.default_rng(9)
    logits = rng.standard_normal((4, 10))
    labels = np.array([3, 0, 9, 3])
    numeric = np.array(
        [
            central_difference(lambda: float(cross_entropy(logits, labels)), logits, index, 1e-5)
            for index in np.ndindex(logits.shape)
        ]
    ).reshape(logits.shape)
    assert (
        elementwise_relative_error(cross_entropy_backward(logits, labels), numeric) < FD_TOLERANCE
    )


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_near_zero_logits_give_log_of_class_count(dtype):
    labels = np.array([0, 4, 9])
    assert cross_entropy(np.zeros((3, 10), dtype), labels) == pytest.approx(math.log(10), abs=1e-6)
    tiny = np.random.default_rng(10).standard_normal((3, 10)).astype(dtype) * dtype(1e-8)
    assert cross_entropy(tiny, labels) == pytest.approx(2.302585, abs=1e-6)
    gradient = cross_entropy_backward(np.zeros((3, 10), dtype), labels)
    expected = (np.full((3, 10), 0.1) - np.eye(10)[labels]) / 3
    assert max_norm_relative_error(gradient, expected) <= 1e-6


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_huge_logits_stay_finite_and_correct(dtype):
    logits = np.array([[1e4, -1e4, 0.0], [-1e4, 1e4, 1e4], [1e4, 1e4, -1e4]], dtype)
    labels = np.array([1, 1, 2])
    # exact: row 0 loses 2e4, row 1 is a two-way tie (ln 2), row 2 loses 2e4 to a tie (+ ln 2)
    expected_loss = (2e4 + math.log(2) + 2e4 + math.log(2)) / 3
    loss = cross_entropy(logits, labels)
    gradient = cross_entropy_backward(logits, labels)
    for result in (loss, gradient, softmax(logits), log_softmax(logits)):
        assert np.all(np.isfinite(result))
    assert loss == pytest.approx(expected_loss, rel=1e-6)
    expected_gradient = np.array([[1.0, -1.0, 0.0], [0.0, -0.5, 0.5], [0.5, 0.5, -1.0]]) / 3
    np.testing.assert_allclose(gradient, expected_gradient, atol=1e-7)
    z = torch.tensor(logits.astype(np.float64), requires_grad=True)
    torch_loss = torch.nn.functional.cross_entropy(z, torch.from_numpy(labels))
    torch_loss.backward()
    assert loss == pytest.approx(torch_loss.item(), rel=1e-6)
    np.testing.assert_allclose(gradient, z.grad.numpy(), atol=1e-7)


@pytest.mark.parametrize(
    ("logits", "labels", "message"),
    [
        (np.zeros(10), np.array([1]), r"logits must be 2-D \(N, classes\)"),
        (np.zeros((2, 10)), np.array([1.0, 2.0]), r"labels must hold integer class indices"),
        (np.zeros((2, 10)), np.array([1, 2, 3]), r"labels has length 3, expected 2"),
        (np.zeros((2, 10)), np.array([1, 10]), r"labels must lie in \[0, 10\)"),
        (np.zeros((2, 10)), np.array([-1, 0]), r"labels must lie in \[0, 10\)"),
        (np.zeros((2, 10)), [1, 2], r"labels must be a 1-D NumPy array"),
    ],
)
def test_cross_entropy_rejects_bad_arguments(logits, labels, message):
    for function in (cross_entropy, cross_entropy_backward):
        with pytest.raises(ValueError, match=message):
            function(logits, labels)


# ---------------------------------------------------------------------------- dtypes


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_every_op_here_preserves_dtype(dtype):
    p = linear_problem(2, 6, 3, seed=11, dtype=dtype)
    labels = np.array([0, 2])
    outputs = {
        "linear": linear(p["x"], p["w"], p["b"]),
        "linear_loops": linear_loops(p["x"], p["w"], p["b"]),
        **{
            f"linear_backward[{i}]": g
            for i, g in enumerate(linear_backward(p["dy"], p["x"], p["w"]))
        },
        **{
            f"linear_backward_loops[{i}]": g
            for i, g in enumerate(linear_backward_loops(p["dy"], p["x"], p["w"]))
        },
        "relu": relu(p["x"]),
        "relu_backward": relu_backward(p["dy"], p["dy"]),
        "softmax": softmax(p["dy"]),
        "log_softmax": log_softmax(p["dy"]),
        "cross_entropy": cross_entropy(p["dy"], labels),
        "cross_entropy_backward": cross_entropy_backward(p["dy"], labels),
    }
    assert {name: out.dtype for name, out in outputs.items()} == dict.fromkeys(
        outputs, np.dtype(dtype)
    )
    assert outputs["relu"].min() == 0 and outputs["relu"].max() > 0  # real values, not empty
