"""Argument validation shared by every op, so both variants reject bad input with one message.

Each check raises ``ValueError`` naming the argument and what was expected.
"""

from __future__ import annotations

import numbers
from typing import NamedTuple

import numpy as np

from cnnbench.network.architecture import conv_output_size


def check_array(name: str, array: object, ndim: int | None, layout: str) -> None:
    """``array`` must be a non-empty floating NumPy array with ``ndim`` axes (None: any number).

    ``layout`` names the axes in messages, e.g. "(N, C, H, W)".
    """
    if not isinstance(array, np.ndarray):
        raise ValueError(f"{name} must be a NumPy array {layout}, got {type(array).__name__}")
    if ndim is not None and array.ndim != ndim:
        raise ValueError(
            f"{name} must be {ndim}-D {layout}, got {array.ndim}-D with shape {array.shape}"
        )
    if not np.issubdtype(array.dtype, np.floating):
        raise ValueError(f"{name} must hold floating-point values, got dtype {array.dtype}")
    if array.size == 0:
        raise ValueError(f"{name} must not be empty, got shape {array.shape}")


def check_same_dtype(**arrays: np.ndarray) -> None:
    """All ``arrays`` share one dtype: ops never mix precisions silently."""
    dtypes = {name: array.dtype for name, array in arrays.items()}
    if len(set(dtypes.values())) > 1:
        listed = ", ".join(f"{name} is {dtype}" for name, dtype in dtypes.items())
        raise ValueError(f"mixed dtypes ({listed}): expected all of them to have one dtype")


def check_windows(x: np.ndarray, kh: int, kw: int, stride: int, padding: int) -> tuple[int, int]:
    """Validate ``x`` (N, C, H, W) and the window geometry; return the output size (Hout, Wout)."""
    check_array("x", x, 4, "(N, C, H, W)")
    return _output_size(x.shape, kh, kw, stride, padding)


def _check_integer(name: str, value: object, least: int) -> None:
    if not isinstance(value, numbers.Integral) or isinstance(value, bool) or value < least:
        raise ValueError(f"{name} must be an integer >= {least}, got {value!r}")


def _output_size(
    x_shape: tuple[int, ...], kh: int, kw: int, stride: int | tuple[int, int], padding: int
) -> tuple[int, int]:
    """(Hout, Wout) of windows over ``x_shape``; ``stride`` one int or per axis (sh, sw)."""
    strides = stride if isinstance(stride, tuple) else (stride, stride)
    for name, value, least in (("kh", kh, 1), ("kw", kw, 1), ("padding", padding, 0)):
        _check_integer(name, value, least)
    for value in strides:
        _check_integer("stride", value, 1)
    height, width = x_shape[2:]
    if height + 2 * padding < kh or width + 2 * padding < kw:
        raise ValueError(
            f"padding {padding} leaves no output for a {height}x{width} input and a {kh}x{kw} "
            f"kernel: expected H + 2*padding >= kh and W + 2*padding >= kw"
        )
    return conv_output_size(height, kh, strides[0], padding), conv_output_size(
        width, kw, strides[1], padding
    )


class PoolGeometry(NamedTuple):
    """A pooling window's size (kh, kw), strides (sh, sw), padding and output size."""

    kh: int
    kw: int
    sh: int
    sw: int
    padding: int
    out_h: int
    out_w: int


def check_pool2d(
    x: np.ndarray, kernel: int | tuple[int, int], stride: int | None, padding: int
) -> PoolGeometry:
    """Validate a pooling's arguments, as torch's ``max_pool2d`` / ``avg_pool2d`` take them.

    ``kernel``: an int (square) or a pair (kh, kw); ``stride``: an int, or None for the kernel's
    size on each axis; ``padding``: an int, at most half the kernel on each axis (torch's limit,
    which keeps a real input pixel in every window).
    """
    check_array("x", x, 4, "(N, C, H, W)")
    pair = (kernel, kernel) if isinstance(kernel, numbers.Integral) else kernel
    if not isinstance(pair, tuple | list) or len(pair) != 2:
        raise ValueError(f"kernel must be an integer or a pair (kh, kw) of them, got {kernel!r}")
    kh, kw = pair
    strides = (kh, kw) if stride is None else (stride, stride)
    out_h, out_w = _output_size(x.shape, kh, kw, strides, padding)
    if 2 * padding > min(kh, kw):
        raise ValueError(
            f"padding {padding} is more than half the {kh}x{kw} kernel: expected "
            f"padding <= kh // 2 and padding <= kw // 2 (as torch's pooling)"
        )
    return PoolGeometry(kh, kw, *strides, padding, out_h, out_w)


def check_pool2d_backward(
    dy: np.ndarray,
    x: np.ndarray,
    kernel: int | tuple[int, int],
    stride: int | None,
    padding: int,
) -> PoolGeometry:
    """Validate a pooling's backward arguments: dy (N, C, Hout, Wout), x's dtype."""
    geometry = check_pool2d(x, kernel, stride, padding)
    check_array("dy", dy, 4, "(N, C, Hout, Wout)")
    check_same_dtype(dy=dy, x=x)
    expected = (*x.shape[:2], geometry.out_h, geometry.out_w)
    if dy.shape != expected:
        raise ValueError(
            f"dy has shape {dy.shape}, expected {expected} (the forward output's shape)"
        )
    return geometry


def _check_weight(x: np.ndarray, w: np.ndarray, layouts: tuple[str, str], inputs: str) -> None:
    """``x`` and ``w`` of the given layouts, one dtype, and ``w.shape[1]`` matching ``x``'s."""
    x_layout, w_layout = layouts
    check_array("x", x, x_layout.count(",") + 1, x_layout)
    check_array("w", w, w_layout.count(",") + 1, w_layout)
    check_same_dtype(x=x, w=w)
    if w.shape[1] != x.shape[1]:
        raise ValueError(
            f"w expects {w.shape[1]} input {inputs} (shape {w.shape}) but x has {x.shape[1]} "
            f"(shape {x.shape}): expected w.shape[1] == x.shape[1]"
        )


def _check_conv_weight(x: np.ndarray, w: np.ndarray) -> None:
    _check_weight(x, w, ("(N, C, H, W)", "(O, C, kh, kw)"), "channels")


def check_conv2d(
    x: np.ndarray, w: np.ndarray, b: np.ndarray, stride: int, padding: int
) -> tuple[int, int]:
    """Validate a convolution's arguments; return the output size (Hout, Wout)."""
    _check_conv_weight(x, w)
    check_array("b", b, 1, "(O,)")
    check_same_dtype(x=x, w=w, b=b)
    if b.shape[0] != w.shape[0]:
        raise ValueError(
            f"b has length {b.shape[0]}, expected {w.shape[0]} (one per output channel of w)"
        )
    return _output_size(x.shape, w.shape[2], w.shape[3], stride, padding)


def check_conv2d_backward(
    dy: np.ndarray, x: np.ndarray, w: np.ndarray, stride: int, padding: int
) -> tuple[int, int]:
    """Validate a convolution's backward arguments; return the output size (Hout, Wout)."""
    _check_conv_weight(x, w)
    out_h, out_w = _output_size(x.shape, w.shape[2], w.shape[3], stride, padding)
    check_array("dy", dy, 4, "(N, O, Hout, Wout)")
    check_same_dtype(dy=dy, x=x, w=w)
    expected = (x.shape[0], w.shape[0], out_h, out_w)
    if dy.shape != expected:
        raise ValueError(
            f"dy has shape {dy.shape}, expected {expected} (the forward output's shape)"
        )
    return out_h, out_w


def _check_linear_weight(x: np.ndarray, w: np.ndarray) -> None:
    _check_weight(x, w, ("(N, in)", "(out, in)"), "features")


def check_linear(x: np.ndarray, w: np.ndarray, b: np.ndarray) -> None:
    """Validate a linear layer's arguments: x (N, in), w (out, in), b (out,)."""
    _check_linear_weight(x, w)
    check_array("b", b, 1, "(out,)")
    check_same_dtype(x=x, w=w, b=b)
    if b.shape[0] != w.shape[0]:
        raise ValueError(f"b has length {b.shape[0]}, expected {w.shape[0]} (one per output of w)")


def check_linear_backward(dy: np.ndarray, x: np.ndarray, w: np.ndarray) -> None:
    """Validate a linear layer's backward arguments: dy (N, out)."""
    _check_linear_weight(x, w)
    check_array("dy", dy, 2, "(N, out)")
    check_same_dtype(dy=dy, x=x, w=w)
    expected = (x.shape[0], w.shape[0])
    if dy.shape != expected:
        raise ValueError(
            f"dy has shape {dy.shape}, expected {expected} (the forward output's shape)"
        )


def check_elementwise_backward(dy: np.ndarray, x: np.ndarray) -> None:
    """An elementwise op's backward: dy must match x in shape and dtype."""
    check_array("x", x, None, "(any shape)")
    check_array("dy", dy, None, f"of shape {x.shape}")
    check_same_dtype(dy=dy, x=x)
    if dy.shape != x.shape:
        raise ValueError(f"dy has shape {dy.shape}, expected {x.shape} (the shape of x)")


def check_classification(logits: np.ndarray, labels: np.ndarray) -> None:
    """logits (N, classes) floating; labels (N,) integer class indices in [0, classes)."""
    check_array("logits", logits, 2, "(N, classes)")
    if not isinstance(labels, np.ndarray) or labels.ndim != 1:
        raise ValueError(
            f"labels must be a 1-D NumPy array (N,) of class indices, got {labels!r:.80}"
        )
    if not np.issubdtype(labels.dtype, np.integer):
        raise ValueError(f"labels must hold integer class indices, got dtype {labels.dtype}")
    if labels.shape[0] != logits.shape[0]:
        raise ValueError(
            f"labels has length {labels.shape[0]}, expected {logits.shape[0]} (rows of logits)"
        )
    classes = logits.shape[1]
    if labels.min() < 0 or labels.max() >= classes:
        raise ValueError(
            f"labels must lie in [0, {classes}), got values from {labels.min()} to {labels.max()}"
        )
