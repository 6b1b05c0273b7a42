"""Vectorized linear layer and ReLU (the linear layer's scalar-loop twin lives in ``loops``)."""

from __future__ import annotations

import numpy as np

from cnnbench.ops.checks import (
    check_array,
    check_elementwise_backward,
    check_linear,
    check_linear_backward,
)


def linear(x: np.ndarray, w: np.ndarray, b: np.ndarray) -> np.ndarray:
    """y = x @ w.T + b for x (N, in), w (out, in) as in PyTorch, b (out,)."""
    check_linear(x, w, b)
    y = x @ w.T
    y += b
    return y


def linear_backward(
    dy: np.ndarray,
    x: np.ndarray,
    w: np.ndarray,
    input_gradient: bool = True,
    parameter_gradients: bool = True,
) -> tuple[np.ndarray | None, np.ndarray | None, np.ndarray | None]:
    """Gradients ``(dx, dw, db)`` of :func:`linear` given ``dy`` = dLoss/dy (N, out).

    dx is computed as ``(w.T @ dy.T).T``, the same numbers as ``dy @ w`` in batch-last memory:
    the layout the im2col convolution keeps its activations in, so that a convolution's backward
    after the first linear layer needs no transposing copy of its gradient (0.8 ms a step).
    ``input_gradient=False``: dx is None; ``parameter_gradients=False``: dw and db are None.
    """
    check_linear_backward(dy, x, w)
    dx = (w.T @ dy.T).T if input_gradient else None
    if not parameter_gradients:
        return dx, None, None
    return dx, dy.T @ x, dy.sum(axis=0)


def relu(x: np.ndarray, out: np.ndarray | None = None) -> np.ndarray:
    """max(x, 0) elementwise; ``out=x``: in place."""
    check_array("x", x, None, "(any shape)")
    return np.maximum(x, 0, out=out)


def relu_backward(dy: np.ndarray, x: np.ndarray, out: np.ndarray | None = None) -> np.ndarray:
    """dy where x > 0, else 0 (the subgradient 0 at x == 0, as PyTorch). ``x``: the ReLU's input
    or its output, which is > 0 at the same places. ``out=dy``: in place."""
    check_elementwise_backward(dy, x)
    return np.multiply(dy, x > 0, out=out)
