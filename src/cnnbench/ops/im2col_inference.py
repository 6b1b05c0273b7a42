"""The im2col network's forward pass, specialised for fast inference (the numpy_im2col backend).

Same arithmetic as ``conv2d_im2col`` (every conv is one matrix multiply over a column matrix of
patches), arranged so that almost no time goes anywhere but BLAS:

- activations are NHWC, so one patch row is KH runs of KW*C contiguous floats and the column
  matrix is filled by a single strided copy (``np.copyto`` from an ``as_strided`` view);
- padded activation buffers, column matrices and outputs are allocated once per batch size and
  reused; the zero borders are written once, ReLU writes straight into the next buffer's interior
  (as ``np.maximum`` against a zero row, not the scalar 0: the scalar form misses NumPy's SIMD
  loop and took 2-3x as long);
- each bias is folded into its matrix multiply as an extra weight row against a constant ones
  column (written once), so no separate bias pass runs;
- weights are reshaped/transposed once at load so every multiply is ``columns @ matrix`` with both
  operands C-contiguous and the output already in the next layer's layout; fc1's columns are
  permuted from PyTorch's (C, H, W) flattening to NHWC order instead of transposing activations;
- large batches run the conv layers in chunks of ``CONV_CHUNK`` images so the column matrices stay
  in cache, then the fully connected layers once over the whole batch so fc1's 2 MB weight matrix
  is streamed once rather than once per chunk.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np
from numpy.lib.stride_tricks import as_strided

from cnnbench.network.architecture import SEED, Architecture

# Written for the seed network (stride and padding shared by its conv layers); the constructor
# refuses any other architecture.
CONV_STRIDE = SEED.feature_layers[0].stride
CONV_PADDING = SEED.feature_layers[0].padding

# images per conv pass: conv2's column matrix for 8 images (8*49*289*4 B = 453 kB) fits a 512 kB
# L2 cache; at batch 1000, 8-16 measured alike, 32 ~10% and 64 ~20% slower
CONV_CHUNK = 8


@dataclass(frozen=True)
class _ConvLayer:
    stage_names: tuple[str, str, str]  # im2col, matmul, relu
    matrix: np.ndarray  # (KH*KW*C_in + 1, C_out): HWC-ordered weights, bias as the last row
    kernel: tuple[int, int]
    in_shape: tuple[int, int, int]  # (H, W, C_in)
    out_shape: tuple[int, int, int]  # (OH, OW, C_out)


def _with_bias_row(matrix: np.ndarray, bias: np.ndarray) -> np.ndarray:
    return np.ascontiguousarray(np.vstack([matrix, bias[None, :]]), dtype=np.float32)


class _ConvWorkspace:
    """Buffers and views for running the conv layers on ``m`` images at once."""

    def __init__(self, layers: list[_ConvLayer], m: int) -> None:
        self.interiors = []  # where each layer's input goes, inside its zero-padded buffer
        self.patches = []  # (m, OH, OW, KH, KW, C) read-only strided views of the padded buffers
        self.column_views = []  # the same shape, writable, inside the column matrices
        self.columns = []  # (m*OH*OW, KH*KW*C + 1), last column ones
        self.outputs = []  # (m*OH*OW, C_out)
        self.zero_rows = []  # (OW, C_out) zeros: ReLU's other operand, one output row
        for layer in layers:
            (height, width, channels), (out_h, out_w, out_c) = layer.in_shape, layer.out_shape
            kh, kw = layer.kernel
            p = CONV_PADDING
            padded = np.zeros((m, height + 2 * p, width + 2 * p, channels), dtype=np.float32)
            self.interiors.append(padded[:, p : p + height, p : p + width, :])
            s_n, s_h, s_w, s_c = padded.strides
            self.patches.append(
                as_strided(
                    padded,
                    shape=(m, out_h, out_w, kh, kw, channels),
                    strides=(s_n, CONV_STRIDE * s_h, CONV_STRIDE * s_w, s_h, s_w, s_c),
                    writeable=False,
                )
            )
            depth = kh * kw * channels
            columns = np.ones((m * out_h * out_w, depth + 1), dtype=np.float32)
            self.columns.append(columns)
            self.column_views.append(
                np.reshape(columns[:, :depth], (m, out_h, out_w, kh, kw, channels), copy=False)
            )
            self.outputs.append(np.empty((m * out_h * out_w, out_c), dtype=np.float32))
            self.zero_rows.append(np.zeros((out_w, out_c), dtype=np.float32))


class Im2colInference:
    """Forward-only im2col network for float32 NCHW batches (checked by the caller)."""

    def __init__(self, arrays: dict[str, np.ndarray], architecture: Architecture) -> None:
        if architecture != SEED:
            raise ValueError("numpy_im2col runs the seed network only")
        self.architecture = architecture
        self.layers: list[_ConvLayer] = []
        for layer in architecture.feature_layers:
            weight = arrays[f"{layer.name}.weight"]  # (C_out, C_in, KH, KW)
            hwc_weight = weight.transpose(2, 3, 1, 0).reshape(-1, len(weight))
            (in_c, in_h, in_w), (out_c, out_h, out_w) = layer.in_shape, layer.out_shape
            self.layers.append(
                _ConvLayer(
                    stage_names=tuple(f"{layer.name} {s}" for s in ("im2col", "matmul", "relu")),
                    matrix=_with_bias_row(hwc_weight, arrays[f"{layer.name}.bias"]),
                    kernel=layer.kernel,
                    in_shape=(in_h, in_w, in_c),
                    out_shape=(out_h, out_w, out_c),
                )
            )
        self.features = out_h * out_w * out_c
        self.fc1 = _with_bias_row(
            architecture.first_linear_hwc_columns(arrays["fc1.weight"]).T, arrays["fc1.bias"]
        )
        self.fc2 = _with_bias_row(arrays["fc2.weight"].T, arrays["fc2.bias"])
        self._hidden_zeros = np.zeros(self.fc1.shape[1], dtype=np.float32)
        self._conv_workspaces: dict[int, _ConvWorkspace] = {}  # by chunk size, at most CONV_CHUNK
        self._fc_inputs: dict[int, tuple[np.ndarray, np.ndarray]] = {}  # by batch size, latest only

    def _fc_buffers(self, n: int) -> tuple[np.ndarray, np.ndarray]:
        """fc1's and fc2's inputs for ``n`` images, each with a trailing ones column."""
        if n not in self._fc_inputs:
            self._fc_inputs = {
                n: (
                    np.ones((n, self.features + 1), dtype=np.float32),
                    np.ones((n, self.fc1.shape[1] + 1), dtype=np.float32),
                )
            }
        return self._fc_inputs[n]

    def _conv_workspace(self, m: int) -> _ConvWorkspace:
        if m not in self._conv_workspaces:
            self._conv_workspaces[m] = _ConvWorkspace(self.layers, m)
        return self._conv_workspaces[m]

    def logits(self, x: np.ndarray) -> np.ndarray:
        """float32 logits (N, classes) for a C-contiguous float32 batch (N, C, H, W), a fresh array."""
        logits = np.empty((len(x), self.fc2.shape[1]), dtype=np.float32)
        for _ in self.stages(x, logits):
            pass
        return logits

    def stages(self, x: np.ndarray, logits: np.ndarray) -> Iterator[str]:
        """Run the forward pass of checked input ``x`` into ``logits`` (N, classes), yielding each
        stage's name as it completes (per-stage timing; a conv stage runs once per chunk)."""
        n = len(x)
        features, hidden = self._fc_buffers(n)
        last = len(self.layers) - 1
        for start in range(0, n, CONV_CHUNK):
            chunk = x[start : start + CONV_CHUNK]
            m = len(chunk)
            workspace = self._conv_workspace(m)
            np.copyto(workspace.interiors[0], chunk.transpose(0, 2, 3, 1))
            yield "input"
            for i, layer in enumerate(self.layers):
                im2col, matmul, relu = layer.stage_names
                np.copyto(workspace.column_views[i], workspace.patches[i])
                yield im2col
                output = workspace.outputs[i]
                np.matmul(workspace.columns[i], layer.matrix, out=output)
                yield matmul
                if i < last:
                    target = workspace.interiors[i + 1]
                else:  # NHWC flattening: each image's output rows end to end
                    target = features[start : start + m, : self.features].reshape(
                        (m, *layer.out_shape), copy=False
                    )
                np.maximum(output.reshape(target.shape), workspace.zero_rows[i], out=target)
                yield relu
        np.matmul(features, self.fc1, out=hidden[:, :-1])
        yield "fc1 matmul"
        np.maximum(hidden[:, :-1], self._hidden_zeros, out=hidden[:, :-1])
        yield "fc1 relu"
        np.matmul(hidden, self.fc2, out=logits)
        yield "fc2 matmul"
