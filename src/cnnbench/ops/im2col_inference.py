"""The im2col network's forward pass, specialised for fast inference (the numpy_im2col backend).

Built from any architecture (``cnnbench.network.architecture``): convolutions of any kernel,
stride, padding and width, max and average pooling, any number of linear layers. Same arithmetic
as ``conv2d_im2col`` (every conv is one matrix multiply over a column matrix of patches), arranged
so that almost no time goes anywhere but BLAS:

- activations are NHWC, so one patch row is KH runs of KW*C contiguous floats and the column
  matrix is filled by a single strided copy (``np.copyto`` from an ``as_strided`` view), or
  one copy per window tap where a window row is shorter than ``SHORT_RUN`` floats;
- padded activation buffers, column matrices and outputs are allocated once per batch size and
  reused; the borders are written once (zeros; -inf before max pooling, so a padded tap never
  wins), and each layer writes straight into the next buffer's interior: ReLU as ``np.maximum``
  against a zero row (not the scalar 0: the scalar form misses NumPy's SIMD loop and took 2-3x as
  long), pooling as one ``np.maximum`` (max) or ``np.add`` (average, then divided by the window's
  KH*KW taps, padded ones counted as ``torch.nn.AvgPool2d`` counts them) per window tap over
  strided views of the whole chunk;
- each bias is folded into its matrix multiply as an extra weight row against a constant ones
  column (written once), so no separate bias pass runs;
- weights are reshaped/transposed once at load so every multiply is ``columns @ matrix`` with both
  operands C-contiguous and the output already in the next layer's layout; the first linear
  layer's columns are permuted from PyTorch's (C, H, W) flattening to NHWC order instead of
  transposing activations;
- large batches run the conv and pool layers in chunks of at most ``CONV_CHUNK`` images, fewer
  where the largest column matrix would outgrow ``COLUMN_BUDGET``, so the column matrices stay in
  cache; then the linear layers once over the whole batch, so the first one's weight matrix (2 MB
  in the seed network) is streamed once rather than once per chunk.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from functools import partial

import numpy as np
from numpy.lib.stride_tricks import as_strided

from cnnbench.network.architecture import CONV, MAXPOOL, Architecture, Layer

# images per conv pass: the seed network's conv2 column matrix for 8 images (8*49*289*4 B = 453 kB)
# fits a 512 kB L2 cache; at batch 1000, 8-16 measured alike, 32 ~10% and 64 ~20% slower
CONV_CHUNK = 8
COLUMN_BUDGET = 512 * 1024  # bytes: a chunk's largest column matrix, when one image's fits
# window rows (KW*C_in floats) shorter than this are copied into the column matrix tap by tap:
# the seed's conv1 (3 floats), 8 images a chunk: 1.7 instead of 4.8 us per image (load 3.7)
SHORT_RUN = 16


@dataclass(frozen=True)
class _WindowLayer:
    """A conv or pooling layer, NHWC."""

    kind: str
    matrix: np.ndarray | None  # conv: (KH*KW*C_in + 1, C_out), HWC-ordered weights, bias last row
    kernel: tuple[int, int]
    stride: int
    padding: int
    in_shape: tuple[int, int, int]  # (H, W, C_in)
    out_shape: tuple[int, int, int]  # (OH, OW, C_out)

    @property
    def fill(self) -> float:
        """The padded border: -inf where a max is taken, else 0."""
        return -np.inf if self.kind == MAXPOOL else 0.0

    @property
    def column_bytes(self) -> int:
        """One image's column matrix (conv layers; 0 for pooling)."""
        return (
            0
            if self.matrix is None
            else 4 * self.out_shape[0] * self.out_shape[1] * len(self.matrix)
        )


def _with_bias_row(matrix: np.ndarray, bias: np.ndarray) -> np.ndarray:
    return np.ascontiguousarray(np.vstack([matrix, bias[None, :]]), dtype=np.float32)


def _nhwc(shape: tuple[int, int, int]) -> tuple[int, int, int]:
    channels, height, width = shape
    return height, width, channels


def _window_layer(layer: Layer, arrays: dict[str, np.ndarray]) -> _WindowLayer:
    matrix = None
    if layer.kind == CONV:
        weight = arrays[f"{layer.name}.weight"]  # (C_out, C_in, KH, KW)
        hwc_weight = weight.transpose(2, 3, 1, 0).reshape(-1, len(weight))
        matrix = _with_bias_row(hwc_weight, arrays[f"{layer.name}.bias"])
    return _WindowLayer(
        kind=layer.kind,
        matrix=matrix,
        kernel=layer.kernel,
        stride=layer.stride,
        padding=layer.padding,
        in_shape=_nhwc(layer.in_shape),
        out_shape=_nhwc(layer.out_shape),
    )


class _Workspace:
    """Buffers and views for running the conv and pooling layers on ``m`` images at once."""

    def __init__(self, layers: list[_WindowLayer], m: int) -> None:
        self.interiors = []  # where each layer's input goes, inside its padded buffer
        # conv: (column matrix view, patches view) pairs, copied one after another to fill the
        # column matrix: the (m, OH, OW, KH, KW, C) strided view of the padded buffer as a whole,
        # or tap by tap where a window row is short (NumPy loops over the outer axes in C)
        self.copies = []
        self.columns = []  # conv: (m*OH*OW, KH*KW*C + 1), last column ones
        self.outputs = []  # conv: (m*OH*OW, C_out)
        self.zero_rows = []  # conv: (OW, C_out) zeros, ReLU's other operand, one output row
        self.taps = []  # pooling: KH*KW read-only (m, OH, OW, C) views, one per window tap
        for layer in layers:
            (height, width, channels), (out_h, out_w, out_c) = layer.in_shape, layer.out_shape
            (kh, kw), s, p = layer.kernel, layer.stride, layer.padding
            padded = np.full((m, height + 2 * p, width + 2 * p, channels), layer.fill, np.float32)
            self.interiors.append(padded[:, p : p + height, p : p + width, :])
            s_n, s_h, s_w, s_c = padded.strides
            patches = as_strided(
                padded,
                shape=(m, out_h, out_w, kh, kw, channels),
                strides=(s_n, s * s_h, s * s_w, s_h, s_w, s_c),
                writeable=False,
            )
            if layer.matrix is None:
                self.taps.append([patches[:, :, :, i, j, :] for i in range(kh) for j in range(kw)])
                for listing in (self.copies, self.columns, self.outputs):
                    listing.append(None)
                self.zero_rows.append(None)
                continue
            self.taps.append(None)
            depth = kh * kw * channels
            columns = np.ones((m * out_h * out_w, depth + 1), dtype=np.float32)
            self.columns.append(columns)
            view = np.reshape(columns[:, :depth], (m, out_h, out_w, kh, kw, channels), copy=False)
            if kw * channels < SHORT_RUN:  # one copy per window tap, not per window row
                self.copies.append(
                    [
                        (view[:, :, :, i, j, :], patches[:, :, :, i, j, :])
                        for i in range(kh)
                        for j in range(kw)
                    ]
                )
            else:
                self.copies.append([(view, patches)])
            self.outputs.append(np.empty((m * out_h * out_w, out_c), dtype=np.float32))
            self.zero_rows.append(np.zeros((out_w, out_c), dtype=np.float32))


class Im2colInference:
    """Forward-only im2col network for float32 NCHW batches (checked by the caller)."""

    def __init__(self, arrays: dict[str, np.ndarray], architecture: Architecture) -> None:
        self.architecture = architecture
        self.windows = [_window_layer(layer, arrays) for layer in architecture.feature_layers]
        largest = max(layer.column_bytes for layer in self.windows)
        self.chunk = max(1, min(CONV_CHUNK, COLUMN_BUDGET // max(largest, 1)))
        self.linears = []  # (matrix with the bias row, ReLU zeros or None), in order
        for j, layer in enumerate(architecture.linear_layers):
            weight = arrays[f"{layer.name}.weight"]
            if j == 0:
                weight = architecture.first_linear_hwc_columns(weight)
            zeros = np.zeros(len(weight), dtype=np.float32) if layer.relu else None
            self.linears.append((_with_bias_row(weight.T, arrays[f"{layer.name}.bias"]), zeros))
        self._workspaces: dict[int, _Workspace] = {}  # by chunk size, at most self.chunk
        self._linear_inputs: dict[int, list[np.ndarray]] = {}  # by batch size, latest only

    def _inputs(self, n: int) -> list[np.ndarray]:
        """Every linear layer's input for ``n`` images, each with a trailing ones column."""
        if n not in self._linear_inputs:
            self._linear_inputs = {
                n: [np.ones((n, len(matrix)), dtype=np.float32) for matrix, _ in self.linears]
            }
        return self._linear_inputs[n]

    def _workspace(self, m: int) -> _Workspace:
        if m not in self._workspaces:
            self._workspaces[m] = _Workspace(self.windows, m)
        return self._workspaces[m]

    def _run_window(self, workspace: _Workspace, i: int, target: np.ndarray) -> None:
        """Layer ``i`` on the chunk in ``workspace.interiors[i]``, into ``target`` (m, OH, OW, C)."""
        layer = self.windows[i]
        if layer.matrix is not None:
            for columns, patches in workspace.copies[i]:
                np.copyto(columns, patches)
            output = workspace.outputs[i]
            np.matmul(workspace.columns[i], layer.matrix, out=output)
            np.maximum(output.reshape(target.shape), workspace.zero_rows[i], out=target)
            return
        first, *rest = workspace.taps[i]
        np.copyto(target, first)
        combine = np.maximum if layer.kind == MAXPOOL else np.add
        for tap in rest:
            combine(target, tap, out=target)
        if layer.kind != MAXPOOL and rest:
            np.divide(target, len(rest) + 1, out=target)

    def _run_linear(self, inputs: list[np.ndarray], j: int, logits: np.ndarray) -> np.ndarray:
        """Linear layer ``j`` on ``inputs[j]``, into the next input (ReLU) or ``logits``."""
        matrix, zeros = self.linears[j]
        output = logits if j == len(self.linears) - 1 else inputs[j + 1][:, :-1]
        np.matmul(inputs[j], matrix, out=output)
        if zeros is not None:
            np.maximum(output, zeros, out=output)
        return output

    def _features(self, inputs: list[np.ndarray], start: int, m: int) -> np.ndarray:
        """Images ``start`` to ``start + m`` of the first linear layer's input, as (m, OH, OW, C):
        the NHWC flattening is each image's output rows end to end."""
        return inputs[0][start : start + m, :-1].reshape(
            (m, *self.windows[-1].out_shape), copy=False
        )

    def logits(self, x: np.ndarray) -> np.ndarray:
        """float32 logits (N, classes) for a C-contiguous float32 batch (N, C, H, W), a fresh array."""
        n = len(x)
        inputs = self._inputs(n)
        last = len(self.windows) - 1
        for start in range(0, n, self.chunk):
            chunk = x[start : start + self.chunk]
            m = len(chunk)
            workspace = self._workspace(m)
            np.copyto(workspace.interiors[0], chunk.transpose(0, 2, 3, 1))
            for i in range(len(self.windows)):
                if i < last:
                    target = workspace.interiors[i + 1]
                else:
                    target = self._features(inputs, start, m)
                self._run_window(workspace, i, target)
        logits = np.empty((n, self.architecture.classes), dtype=np.float32)
        for j in range(len(self.linears)):
            self._run_linear(inputs, j, logits)
        return logits

    def stages(self) -> list[tuple[str, Callable[[np.ndarray], np.ndarray]]]:
        """One (layer name, function) per layer; applied in order to a batch they compute
        exactly :meth:`logits` (the same operations on the same buffers, chunk for chunk). The
        first takes the NCHW batch, the conv and pooling layers return NHWC arrays, the linear
        layers (N, width): fresh arrays."""
        names = [layer.name for layer in self.architecture.layers]
        windows = [partial(self._window_stage, i) for i in range(len(self.windows))]
        linears = [partial(self._linear_stage, j) for j in range(len(self.linears))]
        return list(zip(names, windows + linears, strict=True))

    def _window_stage(self, i: int, a: np.ndarray) -> np.ndarray:
        out = np.empty((len(a), *self.windows[i].out_shape), dtype=np.float32)
        for start in range(0, len(a), self.chunk):
            chunk = a[start : start + self.chunk]
            workspace = self._workspace(len(chunk))
            np.copyto(workspace.interiors[i], chunk.transpose(0, 2, 3, 1) if i == 0 else chunk)
            self._run_window(workspace, i, out[start : start + len(chunk)])
        return out

    def _linear_stage(self, j: int, a: np.ndarray) -> np.ndarray:
        inputs = self._inputs(len(a))
        np.copyto(inputs[j][:, :-1], a.reshape(len(a), -1))
        logits = np.empty((len(a), self.architecture.classes), dtype=np.float32)
        output = self._run_linear(inputs, j, logits)
        return output if output is logits else output.copy()
