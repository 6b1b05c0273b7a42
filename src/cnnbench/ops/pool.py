"""Max and average pooling, forward and backward, as scalar loops and as strided windows.

The arguments are torch's (``torch.nn.functional.max_pool2d`` / ``avg_pool2d``):
``kernel`` an int or a pair (kh, kw), ``stride`` an int or None (the kernel's size), ``padding``
an int, at most half the kernel; Hout = (H + 2p - kh) // sh + 1, no ceil mode, no dilation.
Backward passes take ``x`` again and return dx, like the convolution's (no cache).

Both variants give torch's results bit for bit in float64, because they do torch's (CPU)
arithmetic in torch's order:

- max: the padding is -inf and never wins; the winner of a window is its **first** largest
  value in row-major order (a later equal value does not replace it), except that a NaN always
  replaces the current winner (so the last NaN wins, and the output is NaN).  A window whose
  real pixels are all -inf routes its gradient to its first real pixel.  Backward adds each
  output's gradient to its winner; overlapping windows add up, in the outputs' row-major order.
- average: padding counts as zeros in the divisor (``count_include_pad=True``, torch's default),
  so every window divides by kh*kw: y = (sum of the window in row-major order) / (kh*kw).
  Backward adds dy / (kh*kw) to every real pixel of the window, in the outputs' row-major order.

The loops variant (``*_loops``) is the definition: per window, a Python loop over its real
pixels (float32 inputs are computed in double precision, as in ``ops.loops``).  The strided
variant (``*_strided``) loops over the kh*kw kernel offsets only, each step one vectorised
operation on the strided view of that offset across all windows, taken batch-last
(C, Hout, Wout, N) like ``ops.im2col``'s columns; outputs are NCHW views, the im2col chain's
memory order.  :func:`maxpool2d_indices` gives its winners as torch's ``return_indices`` does.
Its backward adds in torch's order too: the max pooling's in one ``np.add.at`` at those indices
(it adds in the order given), the average's one offset at a time in reverse row-major order,
which for any one input pixel is the outputs' row-major order.  In float32 it also matches
torch's CPU kernels bit for bit (they compute in float32 in the same order).
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np

from cnnbench.ops.checks import PoolGeometry, check_pool2d, check_pool2d_backward
from cnnbench.ops.im2col import taps_inside

Kernel = int | tuple[int, int]


# -- loops ----------------------------------------------------------------------------------------


def _window_ranges(g: PoolGeometry, height: int, width: int) -> list[list[tuple[range, range]]]:
    """For each output pixel (i, j), the real input rows and columns its window covers."""
    rows = [
        range(max(i * g.sh - g.padding, 0), min(i * g.sh - g.padding + g.kh, height))
        for i in range(g.out_h)
    ]
    cols = [
        range(max(j * g.sw - g.padding, 0), min(j * g.sw - g.padding + g.kw, width))
        for j in range(g.out_w)
    ]
    return [[(r, c) for c in cols] for r in rows]


def _argmax_loops(plane: list[list[float]], rows: range, cols: range) -> tuple[int, int]:
    """(row, col) of the window's winner: first largest in row-major order; a NaN always wins."""
    best, where = -np.inf, (rows[0], cols[0])
    for r in rows:
        row = plane[r]
        for c in cols:
            value = row[c]
            if value > best or value != value:  # value != value: NaN
                best, where = value, (r, c)
    return where


def maxpool2d_loops(
    x: np.ndarray, kernel: Kernel, stride: int | None = None, padding: int = 0
) -> np.ndarray:
    """Max pooling by scalar loops: y[n, c, i, j] = the largest value of window (i, j)."""
    g = check_pool2d(x, kernel, stride, padding)
    windows = _window_ranges(g, *x.shape[2:])
    y = [
        [
            [[plane[r][c] for r, c in (_argmax_loops(plane, *w) for w in row)] for row in windows]
            for plane in image
        ]
        for image in x.tolist()
    ]
    return np.array(y, dtype=x.dtype).reshape(*x.shape[:2], g.out_h, g.out_w)


def maxpool2d_backward_loops(
    dy: np.ndarray, x: np.ndarray, kernel: Kernel, stride: int | None = None, padding: int = 0
) -> np.ndarray:
    """dx of :func:`maxpool2d_loops`: each dy[n, c, i, j] added to its window's winner in x."""
    g = check_pool2d_backward(dy, x, kernel, stride, padding)
    windows = _window_ranges(g, *x.shape[2:])
    dx = []
    for image, dy_image in zip(x.tolist(), dy.tolist(), strict=True):
        for plane, dy_plane in zip(image, dy_image, strict=True):
            dplane = [[0.0] * len(row) for row in plane]
            for window_row, dy_row in zip(windows, dy_plane, strict=True):
                for window, grad in zip(window_row, dy_row, strict=True):
                    r, c = _argmax_loops(plane, *window)
                    dplane[r][c] += grad
            dx.append(dplane)
    return np.array(dx, dtype=x.dtype).reshape(x.shape)


def avgpool2d_loops(
    x: np.ndarray, kernel: Kernel, stride: int | None = None, padding: int = 0
) -> np.ndarray:
    """Average pooling by scalar loops: the window's real pixels summed in row-major order,
    divided by kh*kw (padding counted, as ``torch.nn.AvgPool2d``'s default)."""
    g = check_pool2d(x, kernel, stride, padding)
    windows = _window_ranges(g, *x.shape[2:])
    size = g.kh * g.kw
    y = []
    for image in x.tolist():
        for plane in image:
            for window_row in windows:
                for rows, cols in window_row:
                    total = 0.0
                    for r in rows:
                        total = sum(plane[r][cols.start : cols.stop], total)  # one add at a time
                    y.append(total / size)
    return np.array(y, dtype=x.dtype).reshape(*x.shape[:2], g.out_h, g.out_w)


def avgpool2d_backward_loops(
    dy: np.ndarray, x: np.ndarray, kernel: Kernel, stride: int | None = None, padding: int = 0
) -> np.ndarray:
    """dx of :func:`avgpool2d_loops`: dy[n, c, i, j] / (kh*kw) added to each real pixel of
    window (i, j)."""
    g = check_pool2d_backward(dy, x, kernel, stride, padding)
    height, width = x.shape[2:]
    windows = _window_ranges(g, height, width)
    size = g.kh * g.kw
    dx = []
    for dy_image in dy.tolist():
        for dy_plane in dy_image:
            dplane = [[0.0] * width for _ in range(height)]
            for window_row, dy_row in zip(windows, dy_plane, strict=True):
                for (rows, cols), grad in zip(window_row, dy_row, strict=True):
                    share = grad / size
                    for r in rows:
                        drow = dplane[r]
                        for c in cols:
                            drow[c] += share
            dx.append(dplane)
    return np.array(dx, dtype=x.dtype).reshape(x.shape)


# -- strided windows ------------------------------------------------------------------------------


def _batch_last(x: np.ndarray, padding: int, fill: float) -> np.ndarray:
    """``x`` (N, C, H, W) padded with ``fill``, as a (C, H + 2p, W + 2p, N) view of an array in
    ``x``'s memory order (so every operation below runs in one memory order); ``x`` if p == 0."""
    if padding == 0:
        return x.transpose(1, 2, 3, 0)
    n_images, channels, height, width = x.shape
    padded = np.full_like(
        x, fill, shape=(n_images, channels, height + 2 * padding, width + 2 * padding)
    )
    padded[:, :, padding : padding + height, padding : padding + width] = x
    return padded.transpose(1, 2, 3, 0)


def _offsets(padded: np.ndarray, g: PoolGeometry) -> Iterator[tuple[int, np.ndarray]]:
    """(k, view) per kernel offset k = ki*kw + kj in row-major order; view (C, Hout, Wout, N)
    holds that offset's pixel of every window of ``padded`` (C, Hp, Wp, N)."""
    for ki in range(g.kh):
        rows = slice(ki, ki + (g.out_h - 1) * g.sh + 1, g.sh)
        for kj in range(g.kw):
            yield ki * g.kw + kj, padded[:, rows, kj : kj + (g.out_w - 1) * g.sw + 1 : g.sw]


def maxpool2d_strided(
    x: np.ndarray, kernel: Kernel, stride: int | None = None, padding: int = 0
) -> np.ndarray:
    """Max pooling, one ``np.maximum`` per kernel offset over all windows (-inf padding)."""
    g = check_pool2d(x, kernel, stride, padding)
    offsets = _offsets(_batch_last(x, padding, -np.inf), g)
    y = next(offsets)[1].copy(order="K")
    for _, view in offsets:
        np.maximum(y, view, out=y)  # NaN propagates, as torch's max
    return y.transpose(3, 0, 1, 2)


def maxpool2d_indices(
    x: np.ndarray, kernel: Kernel, stride: int | None = None, padding: int = 0
) -> np.ndarray:
    """Where each window's winner is (torch's rule, module doc): its flat index into its image
    plane, row * W + col, (N, C, Hout, Wout) int64, as ``max_pool2d(..., return_indices=True)``.

    The winners' kernel offsets are found one offset at a time like :func:`maxpool2d_strided`,
    starting from each window's first real pixel (what wins when all real pixels are -inf).
    """
    g = check_pool2d(x, kernel, stride, padding)
    offsets = list(_offsets(_batch_last(x, padding, -np.inf), g))
    best = np.full_like(offsets[0][1], -np.inf)
    first_row = np.maximum(padding - np.arange(g.out_h) * g.sh, 0)
    first_col = np.maximum(padding - np.arange(g.out_w) * g.sw, 0)
    winner = np.empty_like(best, dtype=np.min_scalar_type(g.kh * g.kw))
    winner[...] = (first_row[:, None] * g.kw + first_col)[None, :, :, None]
    nan = bool(np.isnan(x).any())  # a NaN always wins; testing for one costs a pass per offset
    for k, view in offsets:
        replace = view > best
        if nan:
            replace |= np.isnan(view)
        np.maximum(best, view, out=best)  # a NaN stays: only a NaN can replace it
        # winner = k where replace: arithmetic, several times faster than a masked copy
        winner *= ~replace
        winner += replace * winner.dtype.type(k)
    width = x.shape[3]
    # the offset's row and column in the plane, from each window's top-left corner
    offset = ((np.arange(g.kh)[:, None] - padding) * width + np.arange(g.kw) - padding).ravel()
    origin = np.arange(g.out_h)[:, None] * g.sh * width + np.arange(g.out_w) * g.sw
    indices = offset.take(winner)
    indices += origin[None, :, :, None]
    return indices.transpose(3, 0, 1, 2)


def maxpool2d_backward_strided(
    dy: np.ndarray, x: np.ndarray, kernel: Kernel, stride: int | None = None, padding: int = 0
) -> np.ndarray:
    """dx of :func:`maxpool2d_strided`: each window's dy added to its winner in x, by one
    ``np.add.at`` (which adds in the order given: the outputs' row-major order, torch's)."""
    check_pool2d_backward(dy, x, kernel, stride, padding)
    n_images, channels, height, width = x.shape
    planes = np.arange(n_images * channels).reshape(n_images, channels, 1, 1) * (height * width)
    dx = np.zeros(x.shape, dtype=x.dtype)
    np.add.at(
        dx.reshape(-1), (maxpool2d_indices(x, kernel, stride, padding) + planes).ravel(), dy.ravel()
    )
    return dx


def avgpool2d_strided(
    x: np.ndarray, kernel: Kernel, stride: int | None = None, padding: int = 0
) -> np.ndarray:
    """Average pooling (zero padding, divisor kh*kw), one add per kernel offset."""
    g = check_pool2d(x, kernel, stride, padding)
    offsets = _offsets(_batch_last(x, padding, 0), g)
    total = next(offsets)[1].copy(order="K")
    for _, view in offsets:
        total += view
    total /= g.kh * g.kw
    return total.transpose(3, 0, 1, 2)


def avgpool2d_backward_strided(
    dy: np.ndarray, x: np.ndarray, kernel: Kernel, stride: int | None = None, padding: int = 0
) -> np.ndarray:
    """dx of :func:`avgpool2d_strided`: dy / (kh*kw) added back onto every window's real pixels,
    one strided add per kernel offset of the taps inside the image (as ``ops.im2col.col2im``)."""
    g = check_pool2d_backward(dy, x, kernel, stride, padding)
    share = dy.transpose(1, 2, 3, 0) / (g.kh * g.kw)
    height, width = x.shape[2:]
    dx = np.zeros_like(x)
    batch_last = dx.transpose(1, 2, 3, 0)
    # reverse row-major offset order: for each pixel, the outputs' row-major order (torch's)
    for ki in reversed(range(g.kh)):
        out_rows, rows = taps_inside(g.out_h, height, ki, g.sh, g.padding)
        for kj in reversed(range(g.kw)):
            out_columns, columns = taps_inside(g.out_w, width, kj, g.sw, g.padding)
            batch_last[:, rows, columns] += share[:, out_rows, out_columns]
    return dx
