"""The definitions as explicit Python loops: every multiply-add is one scalar operation.

The readable reference, and the "slow" backend.  To be as fast as pure Python allows while
staying the definition, each call converts its arrays once into nested lists of Python floats
(a NumPy scalar lookup costs several times a list lookup) and hoists every lookup out of the inner loop.
Python floats are doubles, so float32 inputs are accumulated in double precision; results are
cast back to the input's dtype.

For a convolution, the sum over (c, ki, kj) of one output pixel runs as one flat loop over the
pixel's window, gathered once and shared by all O output channels: the same terms added in the
same order as three nested loops, at a fraction of the loop overhead.

The forward passes' innermost loop, ``total = bias; for v, w in zip(window, kernel): total += v * w``,
is written ``sum(map(mul, window, kernel), bias)``: still one Python float multiplication per
term (``operator.mul`` on two Python floats) and the terms added one at a time in the same order
from ``bias``, but the loop itself runs in the interpreter's C iteration of ``map`` and ``sum``
instead of bytecode, about 1.5-2x faster. (From Python 3.12 ``sum`` adds floats with compensated
summation, which can change the last bit; the project pins Python 3.11.) The backward passes keep
plain loops: each term there updates a different accumulator.
"""

from __future__ import annotations

from operator import mul

import numpy as np

from cnnbench.ops.checks import (
    check_conv2d,
    check_conv2d_backward,
    check_linear,
    check_linear_backward,
)


def _pad(x: np.ndarray, padding: int) -> np.ndarray:
    """``x`` (N, C, H, W) with ``padding`` zeros on each side of H and W; ``x`` itself when 0."""
    if padding == 0:
        return x
    n_images, channels, height, width = x.shape
    padded = np.zeros(
        (n_images, channels, height + 2 * padding, width + 2 * padding), dtype=x.dtype
    )
    padded[:, :, padding : padding + height, padding : padding + width] = x
    return padded


def conv2d_loops(
    x: np.ndarray, w: np.ndarray, b: np.ndarray, stride: int = 1, padding: int = 0
) -> np.ndarray:
    """Convolution (cross-correlation, as torch.nn.functional.conv2d) by scalar loops.

    y[n, o, i, j] = b[o] + sum over c, ki, kj of
                    x_padded[n, c, i*stride + ki, j*stride + kj] * w[o, c, ki, kj]
    """
    out_h, out_w = check_conv2d(x, w, b, stride, padding)
    out_channels, _, kh, kw = w.shape
    kernels = w.reshape(out_channels, -1).tolist()  # per output channel, flat in (c, ki, kj) order
    biases = b.tolist()
    kernel_rows, kernel_cols = range(kh), range(kw)
    y = []
    for image in _pad(x, padding).tolist():
        y_image = [[[0.0] * out_w for _ in range(out_h)] for _ in range(out_channels)]
        for i in range(out_h):
            top = i * stride
            rows = [plane[top + ki] for plane in image for ki in kernel_rows]  # (c, ki) order
            for j in range(out_w):
                left = j * stride
                window = [row[left + kj] for row in rows for kj in kernel_cols]
                for y_plane, kernel, bias in zip(y_image, kernels, biases, strict=True):
                    # bias + window[0] * kernel[0] + window[1] * kernel[1] + ..., in that order
                    y_plane[i][j] = sum(map(mul, window, kernel), bias)
        y.append(y_image)
    return np.array(y, dtype=x.dtype)


def conv2d_backward_loops(
    dy: np.ndarray,
    x: np.ndarray,
    w: np.ndarray,
    stride: int = 1,
    padding: int = 0,
    input_gradient: bool = True,
) -> tuple[np.ndarray | None, np.ndarray, np.ndarray]:
    """Gradients ``(dx, dw, db)`` of :func:`conv2d_loops` given ``dy`` = dLoss/dy, by scalar loops.

    Each output pixel's gradient g = dy[n, o, i, j] adds g to db[o], g * window[k] to
    dw[o, k] and g * w[o, k] to the gradient of window tap k; that lands on the tap's input
    pixel in dx, where overlapping windows add up. ``input_gradient=False``: dx is not added up
    and is returned as None (the first layer's, which training does not need).
    """
    out_h, out_w = check_conv2d_backward(dy, x, w, stride, padding)
    out_channels, _, kh, kw = w.shape
    height, width = x.shape[2:]
    kernels = w.reshape(out_channels, -1).tolist()
    window_size = len(kernels[0])
    dkernels = [[0.0] * window_size for _ in kernels]
    dbiases = [0.0] * out_channels
    kernel_rows, kernel_cols, taps = range(kh), range(kw), range(window_size)
    dx_padded = []
    for image, dy_image in zip(_pad(x, padding).tolist(), dy.tolist(), strict=True):
        dimage = [[[0.0] * len(row) for row in plane] for plane in image]
        for i in range(out_h):
            top = i * stride
            rows = [plane[top + ki] for plane in image for ki in kernel_rows]
            drows = [plane[top + ki] for plane in dimage for ki in kernel_rows]
            for j in range(out_w):
                left = j * stride
                window = [row[left + kj] for row in rows for kj in kernel_cols]
                dwindow = [0.0] * window_size
                for o, (kernel, dkernel, dy_plane) in enumerate(
                    zip(kernels, dkernels, dy_image, strict=True)
                ):
                    grad = dy_plane[i][j]
                    dbiases[o] += grad
                    for k in taps:
                        dkernel[k] += grad * window[k]
                        dwindow[k] += grad * kernel[k]
                if not input_gradient:
                    continue
                k = 0
                for drow in drows:  # back onto the window's input pixels, (c, ki, kj) order
                    for kj in kernel_cols:
                        drow[left + kj] += dwindow[k]
                        k += 1
        dx_padded.append(dimage)
    dx = None
    if input_gradient:
        dx = np.array(dx_padded, dtype=x.dtype)[
            :, :, padding : padding + height, padding : padding + width
        ]
    return (
        dx,
        np.array(dkernels, dtype=x.dtype).reshape(w.shape),
        np.array(dbiases, dtype=x.dtype),
    )


def linear_loops(x: np.ndarray, w: np.ndarray, b: np.ndarray) -> np.ndarray:
    """y[n, o] = b[o] + sum over i of x[n, i] * w[o, i], by scalar loops; ``w`` is (out, in)."""
    check_linear(x, w, b)
    if len(x) == 1:
        # one image reads each weight once: fc1's 512 K weights are read row by row through
        # memoryviews (a Python float made per weight as it is used, the same value tolist gives)
        # instead of first being copied into a list of lists, which took as long as the sums
        weight_rows = [memoryview(row) for row in np.ascontiguousarray(w)]
    else:
        weight_rows = w.tolist()
    biases = b.tolist()
    y = []
    for features in x.tolist():
        y_row = []
        for weights, bias in zip(weight_rows, biases, strict=True):
            # bias + features[0] * weights[0] + ..., in that order (lengths checked above)
            y_row.append(sum(map(mul, features, weights), bias))
        y.append(y_row)
    return np.array(y, dtype=x.dtype)


def linear_backward_loops(
    dy: np.ndarray, x: np.ndarray, w: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Gradients ``(dx, dw, db)`` of :func:`linear_loops` given ``dy`` = dLoss/dy, by scalar loops.

    Each g = dy[n, o] adds g to db[o], g * x[n, k] to dw[o, k] and g * w[o, k] to dx[n, k].
    """
    check_linear_backward(dy, x, w)
    weight_rows = w.tolist()
    dweight_rows = [[0.0] * w.shape[1] for _ in weight_rows]
    dbiases = [0.0] * w.shape[0]
    in_features = range(w.shape[1])
    dx = []
    for features, grads in zip(x.tolist(), dy.tolist(), strict=True):
        dfeatures = [0.0] * w.shape[1]
        for o, (grad, weights, dweights) in enumerate(
            zip(grads, weight_rows, dweight_rows, strict=True)
        ):
            dbiases[o] += grad
            for k in in_features:
                dweights[k] += grad * features[k]
                dfeatures[k] += grad * weights[k]
        dx.append(dfeatures)
    return (
        np.array(dx, dtype=x.dtype),
        np.array(dweight_rows, dtype=x.dtype),
        np.array(dbiases, dtype=x.dtype),
    )
