"""Convolution as one matrix multiply per layer: windows gathered by strides (im2col).

Column matrix layout, shared by every function here: rows in (c, ki, kj) order, the order of
``w.reshape(O, -1)``; columns in (i, j, n) order, the image index varying fastest.  Windows are
taken from the input transposed to (C, H, W, N), so the copy that builds the matrix, and every
strided add of :func:`col2im`, moves runs of N contiguous floats rather than a few strided ones.
With the weights on the left, ``w_matrix @ cols`` is (O, Hout*Wout*N), whose NCHW view is a
free transpose; the backward needs no transposed copy of the (large) column matrix:
``dy_matrix @ cols.T`` hands BLAS the transpose as a flag.
"""

from __future__ import annotations

import itertools

import numpy as np

from cnnbench.network.architecture import conv_output_size
from cnnbench.ops.checks import check_conv2d, check_conv2d_backward, check_windows


def im2col(x: np.ndarray, kh: int, kw: int, stride: int = 1, padding: int = 0) -> np.ndarray:
    """Column matrix (C*kh*kw, Hout*Wout*N) of ``x`` (N, C, H, W): one column per window.

    One strided copy per kernel offset, of its taps inside the image, straight from ``x`` as
    (C, H, W, N); the taps on the padding are written as zeros. No padded copy of ``x`` is made
    first (conv2's column matrix, batch 128, 0.85 -> 0.66 ms; conv3's 0.53 -> 0.35 ms on a
    2-core Xeon).
    """
    out_h, out_w = check_windows(x, kh, kw, stride, padding)
    n_images, channels, height, width = x.shape
    batch_last = x.transpose(1, 2, 3, 0)
    cols = np.empty((channels, kh, kw, out_h, out_w, n_images), dtype=x.dtype)
    column_taps = [taps_inside(out_w, width, kj, stride, padding) for kj in range(kw)]
    for ki in range(kh):
        out_rows, rows = taps_inside(out_h, height, ki, stride, padding)
        for kj, (out_columns, columns) in enumerate(column_taps):
            taps = cols[:, ki, kj]
            taps[:, : out_rows.start] = 0
            taps[:, out_rows.stop :] = 0
            taps[:, out_rows, : out_columns.start] = 0
            taps[:, out_rows, out_columns.stop :] = 0
            taps[:, out_rows, out_columns] = batch_last[:, rows, columns]
    return cols.reshape(channels * kh * kw, out_h * out_w * n_images)


def col2im(
    cols: np.ndarray,
    x_shape: tuple[int, int, int, int],
    kh: int,
    kw: int,
    stride: int = 1,
    padding: int = 0,
) -> np.ndarray:
    """Adjoint of :func:`im2col`: add each column back onto the window it came from.

    Overlapping windows accumulate; input pixels no window reaches (when the stride does not
    divide H + 2*padding - kh) get zero.  One strided write per kernel offset (kh*kw in all), of
    the taps that land inside the image: those on the padding are dropped, not added up in a
    padded array that is then cut (conv3's col2im alone: 1.15 ms before, 0.83 ms after). Where an
    offset is the first to reach a pixel, its value is copied rather than added to a zero (one
    pass over the result fewer; the same sums in the same order, but that a -0.0 stays -0.0):
    conv3's col2im, batch 128, 0.67 -> 0.54 ms, conv2's 1.20 -> 0.99 ms on a 2-core Xeon.
    Returns (N, C, H, W), a view of a (C, H, W, N) array.
    """
    n_images, channels, height, width = x_shape
    out_h = conv_output_size(height, kh, stride, padding)
    out_w = conv_output_size(width, kw, stride, padding)
    expected = (channels * kh * kw, out_h * out_w * n_images)
    if cols.shape != expected:
        raise ValueError(
            f"cols has shape {cols.shape}, expected {expected} "
            f"for x of shape {tuple(x_shape)} and a {kh}x{kw} kernel"
        )
    blocks = cols.reshape(channels, kh, kw, out_h, out_w, n_images)
    dx = np.empty((channels, height, width, n_images), dtype=cols.dtype)
    row_runs, rows_reached = _tap_runs(out_h, height, kh, stride, padding)
    column_runs, columns_reached = _tap_runs(out_w, width, kw, stride, padding)
    dx[:, ~rows_reached] = 0
    dx[:, :, ~columns_reached] = 0
    # a pixel's offsets in row-major order, as they were added to zero before: the first one
    # reaching it is the first along rows and the first along columns
    for ki in range(kh):
        for out_rows, rows, first_row in row_runs[ki]:
            for kj in range(kw):
                for out_columns, columns, first_column in column_runs[kj]:
                    taps = blocks[:, ki, kj, out_rows, out_columns]
                    if first_row and first_column:
                        dx[:, rows, columns] = taps
                    else:
                        dx[:, rows, columns] += taps
    return dx.transpose(3, 0, 1, 2)


def _tap_runs(
    out: int, size: int, kernel: int, stride: int, padding: int
) -> tuple[list[list[tuple[slice, slice, bool]]], np.ndarray]:
    """Along one axis, for each kernel offset: its taps inside the image (:func:`taps_inside`)
    cut into runs of (output positions, input positions, first), ``first`` where no smaller
    offset reaches those input positions; and which input positions any offset reaches."""
    reached = np.zeros(size, dtype=bool)
    runs = []
    for offset in range(kernel):
        out_positions, in_positions = taps_inside(out, size, offset, stride, padding)
        positions = np.arange(size)[in_positions]
        first = ~reached[positions]
        reached[positions] = True
        edges = [0, *(np.flatnonzero(np.diff(first)) + 1), len(positions)]
        runs.append(
            [
                (
                    slice(out_positions.start + start, out_positions.start + stop),
                    slice(positions[start], positions[stop - 1] + 1, stride),
                    bool(first[start]),
                )
                for start, stop in itertools.pairwise(edges)
                if stop > start  # none where no tap is inside
            ]
        )
    return runs, reached


def taps_inside(out: int, size: int, offset: int, stride: int, padding: int) -> tuple[slice, slice]:
    """Along one axis, for kernel tap ``offset``: the output positions i whose input position
    stride * i + offset - padding lies in the image (0 .. size - 1), and those positions."""
    first = max(0, -((offset - padding) // stride))  # ceil((padding - offset) / stride)
    last = min(out - 1, (size - 1 + padding - offset) // stride)
    if last < first:
        return slice(0, 0), slice(0, 0)
    start = first * stride + offset - padding
    return slice(first, last + 1), slice(start, start + (last - first) * stride + 1, stride)


def conv2d_im2col(
    x: np.ndarray, w: np.ndarray, b: np.ndarray, stride: int = 1, padding: int = 0
) -> np.ndarray:
    """Convolution (cross-correlation, as torch.nn.functional.conv2d) by im2col and one matmul.

    Returns (N, O, Hout, Wout), a view of an (O, Hout, Wout, N) array: the next layer's
    :func:`im2col` wants exactly that memory order.
    """
    return conv2d_im2col_with_columns(x, w, b, stride, padding)[0]


def conv2d_im2col_with_columns(
    x: np.ndarray, w: np.ndarray, b: np.ndarray, stride: int = 1, padding: int = 0
) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """:func:`conv2d_im2col`'s output, and what its backward can reuse: ``{"cols": x's column
    matrix}``, to pass on as ``conv2d_backward_im2col(dy, x, w, stride, padding, **kept)``, so
    that training builds each column matrix once rather than twice."""
    out_h, out_w = check_conv2d(x, w, b, stride, padding)
    out_channels, _, kh, kw = w.shape
    cols = im2col(x, kh, kw, stride, padding)
    y = w.reshape(out_channels, -1) @ cols
    y += b[:, None]
    return y.reshape(out_channels, out_h, out_w, x.shape[0]).transpose(3, 0, 1, 2), {"cols": cols}


def conv2d_backward_im2col(
    dy: np.ndarray,
    x: np.ndarray,
    w: np.ndarray,
    stride: int = 1,
    padding: int = 0,
    cols: np.ndarray | None = None,
    input_gradient: bool = True,
    parameter_gradients: bool = True,
) -> tuple[np.ndarray | None, np.ndarray | None, np.ndarray | None]:
    """Gradients ``(dx, dw, db)`` of :func:`conv2d_im2col` given ``dy`` = dLoss/dy.

    dw = dy_matrix @ cols.T (one matmul), dx = col2im(w_matrix.T @ dy_matrix). ``cols``: x's
    column matrix as the forward built it (:func:`conv2d_im2col_with_columns`); None: rebuilt
    from ``x``. ``input_gradient=False``: dx is not computed (None); training never needs the
    first layer's, a matmul and a col2im it need not pay for. ``parameter_gradients=False``:
    nor are dw and db; the two halves, called apart, give the numbers of one call.
    """
    out_h, out_w = check_conv2d_backward(dy, x, w, stride, padding)
    out_channels, _, kh, kw = w.shape
    if cols is not None and (
        cols.shape != (w[0].size, out_h * out_w * x.shape[0]) or cols.dtype != x.dtype
    ):
        raise ValueError(
            f"cols is {cols.dtype} {cols.shape}, expected x's column matrix: {x.dtype} "
            f"{(w[0].size, out_h * out_w * x.shape[0])}"
        )
    dy_matrix = dy.transpose(1, 2, 3, 0).reshape(out_channels, -1)  # (O, Hout*Wout*N)
    dx = dw = db = None
    if parameter_gradients:
        if cols is None:  # only dw needs it
            cols = im2col(x, kh, kw, stride, padding)
        # dw = dy_matrix @ cols.T, or as its transpose: the same numbers, which OpenBLAS computes
        # faster with the taller matrix on the left where the sum (pixels x images) is long:
        # conv2 and conv3 10-30 % (taps x channels > output channels), conv1 20 % the other way
        if len(cols) > out_channels:
            dw = (cols @ dy_matrix.T).T.reshape(w.shape)
        else:
            dw = (dy_matrix @ cols.T).reshape(w.shape)
        db = dy_matrix.sum(axis=1)
    if input_gradient:
        dx = col2im(w.reshape(out_channels, -1).T @ dy_matrix, x.shape, kh, kw, stride, padding)
    return dx, dw, db
