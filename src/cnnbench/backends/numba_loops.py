"""numba_loops: the network as explicit scalar loops, compiled by numba.

The algorithm is the loop network's (``cnnbench.ops``: one scalar multiply-add per weight and output
position, no matrix library), so comparing with ``numpy_loops`` separates interpreter overhead from
algorithm; sums run in float32 (ops' loops use Python's doubles) and in (kh, kw, c_in) order. The
loop order is chosen for the compiler: activations are HWC and weights (KH, KW, C_in, C_out), so the innermost loop runs over
contiguous output channels; its iterations are independent, so LLVM vectorizes them (AVX2)
without fast-math and without reordering any sum (allowing FMA contraction measured no faster).
Compilation happens once per process, at load, and is reported as ``compile_s``.
"""

from __future__ import annotations

import time

import numba
import numpy as np

from cnnbench.backends import Backend
from cnnbench.geometry import (
    CONV_PADDING,
    CONV_STRIDE,
    INPUT_SHAPE,
    NUM_CLASSES,
    conv_shapes,
    fc1_hwc_columns,
)


@numba.njit
def _conv_relu(x, weight, bias, out):
    """x (H, W, C_in), weight (KH, KW, C_in, C_out) -> out (OH, OW, C_out), ReLU applied."""
    height, width, in_c = x.shape
    kernel_h, kernel_w, _, out_c = weight.shape
    out_h, out_w, _ = out.shape
    for oh in range(out_h):
        for ow in range(out_w):
            for co in range(out_c):
                out[oh, ow, co] = bias[co]
            for kh in range(kernel_h):
                ih = oh * CONV_STRIDE - CONV_PADDING + kh
                if ih < 0 or ih >= height:
                    continue  # zero padding contributes nothing
                for kw in range(kernel_w):
                    iw = ow * CONV_STRIDE - CONV_PADDING + kw
                    if iw < 0 or iw >= width:
                        continue
                    for ci in range(in_c):
                        activation = x[ih, iw, ci]
                        for co in range(out_c):
                            out[oh, ow, co] += activation * weight[kh, kw, ci, co]
            for co in range(out_c):
                out[oh, ow, co] = max(out[oh, ow, co], 0.0)


@numba.njit
def _linear(x, weight_t, bias, out, relu):
    """x (F,), weight_t (F, O) -> out (O,) = x @ weight_t + bias, ReLU if ``relu``."""
    for o in range(out.shape[0]):
        out[o] = bias[o]
    for f in range(x.shape[0]):
        activation = x[f]
        for o in range(out.shape[0]):
            out[o] += activation * weight_t[f, o]
    if relu:
        for o in range(out.shape[0]):
            out[o] = max(out[o], 0.0)


@numba.njit
def _forward(
    images, w1, b1, w2, b2, w3, b3, fc1, fc1_b, fc2, fc2_b, act1, act2, act3, hidden, logits
):
    """images (N, H, W, 1) -> logits (N, 10), one image at a time through preallocated buffers."""
    for n in range(images.shape[0]):
        _conv_relu(images[n], w1, b1, act1)
        _conv_relu(act1, w2, b2, act2)
        _conv_relu(act2, w3, b3, act3)
        _linear(act3.reshape(-1), fc1, fc1_b, hidden, True)
        _linear(hidden, fc2, fc2_b, logits[n], False)


class NumbaLoopsBackend(Backend):
    name = "numba_loops"

    def __init__(self, arrays: dict[str, np.ndarray]) -> None:
        parameters = []  # weights in loop order, then per-image HWC buffers reused across calls
        buffers = []
        for layer in conv_shapes():
            weight = np.ascontiguousarray(arrays[f"{layer.name}.weight"].transpose(2, 3, 1, 0))
            parameters += [weight, arrays[f"{layer.name}.bias"]]
            channels, height, width = layer.out_shape
            buffers.append(np.empty((height, width, channels), dtype=np.float32))
        fc1 = arrays["fc1.weight"]
        parameters += [np.ascontiguousarray(fc1_hwc_columns(fc1).T), arrays["fc1.bias"]]
        parameters += [np.ascontiguousarray(arrays["fc2.weight"].T), arrays["fc2.bias"]]
        buffers.append(np.empty(len(fc1), dtype=np.float32))
        self._arguments = (*parameters, *buffers)
        started = time.perf_counter()
        example = self._images(np.zeros((1, *INPUT_SHAPE), dtype=np.float32))
        _forward.compile(
            tuple(numba.typeof(a) for a in (example, *self._arguments, self._logits(1)))
        )
        self.compile_s = time.perf_counter() - started

    @staticmethod
    def _images(x: np.ndarray) -> np.ndarray:
        return np.ascontiguousarray(x.transpose(0, 2, 3, 1))  # NHWC; no copy for one channel

    @staticmethod
    def _logits(n: int) -> np.ndarray:
        return np.empty((n, NUM_CLASSES), dtype=np.float32)

    def _forward(self, x: np.ndarray) -> np.ndarray:
        logits = self._logits(len(x))
        _forward(self._images(x), *self._arguments, logits)
        return logits
