"""numba_loops: the network as explicit scalar loops, compiled by numba.

The algorithm is the loop network's (``cnnbench.ops``: one scalar multiply-add per weight and output
position, no matrix library), so comparing with ``numpy_loops`` separates interpreter overhead from
algorithm. Sums run in float32 (ops' loops use Python's doubles) and, as the issue allows, not in
the loops' order: each output is a dot product of a weight row with an input window, compiled with
``fastmath`` reassociation so LLVM splits the sum over several vector accumulators (AVX2) that stay
in registers. Each pass over the windows computes two output positions times four output channels
(8 sums), so every weight loaded feeds two multiply-adds and every input value four. conv1's
windows (3*3*1 = 9 taps) are too short to vectorize along, so its inner loop runs along the output
channels instead.

Layout, chosen so every inner loop runs over contiguous memory without branches:

- activations are HWC and held in zero-padded buffers (borders written once, at load), so a window
  is KH contiguous runs of KW*C_in floats and the padding needs no bounds tests;
- conv weights are (C_out, KH, KW*C_in), fc1's columns are permuted to the HWC flattening;
- every weight and buffer is allocated 64-byte aligned (a cache line) at load.

Why the previous version's speed varied between fresh processes (155-267 us per image, same code):
alignment. NumPy places small arrays 16-byte aligned, at addresses that differ between processes;
that version's inner loop read and wrote the output row in memory for every multiply-add vector
(``out[oh, ow, co] += a * w[..., co]``), so when its arrays sat at 16 mod 32 bytes half of the
32-byte AVX2 loads and stores straddled cache lines. Measured in one process with that version's
kernel and the same weights copied to chosen addresses (6 rounds of 300 images, load ~9 on 2
cores): every array 64-byte aligned 192 us median per image, every array at 16 mod 32 bytes 293 us
(1.5x), every array at the same offset in its 4 KiB page (4K aliasing) 197 us, no slower. This
version allocates every weight and buffer 64-byte aligned and keeps its sums in registers.

Compilation happens once per process, at load, and is reported as ``compile_s``.
"""

from __future__ import annotations

import time

import numba
import numpy as np

from cnnbench.backends import Backend
from cnnbench.network.architecture import SEED, Architecture

# Written for the seed network (stride and padding shared by its conv layers); the constructor
# refuses any other architecture.
CONV_STRIDE = SEED.feature_layers[0].stride
CONV_PADDING = SEED.feature_layers[0].padding

# reassociation (sums split over vector accumulators), contraction (fused multiply-add), no signed
# zeros (so max(x, 0) needs no sign care); no assumptions about NaN or infinity
_FASTMATH = {"reassoc", "contract", "nsz"}
_ALIGNMENT = 64  # bytes: one cache line, two AVX2 vectors


def aligned_zeros(shape: tuple[int, ...]) -> np.ndarray:
    """A float32 zero array of ``shape`` starting on a ``_ALIGNMENT``-byte boundary."""
    size = int(np.prod(shape))
    raw = np.zeros(size + _ALIGNMENT // 4, dtype=np.float32)
    offset = (-raw.ctypes.data % _ALIGNMENT) // 4
    return raw[offset : offset + size].reshape(shape)


def aligned_copy(array: np.ndarray) -> np.ndarray:
    out = aligned_zeros(array.shape)
    out[...] = array
    return out


@numba.njit(fastmath=_FASTMATH, boundscheck=False)
def _gather(flat, corner, row_step, kernel, run, window):
    """Copy the KH runs of KW*C_in floats of one output position's window into ``window``."""
    for kh in range(kernel):
        start = corner + kh * row_step
        for k in range(run):
            window[kh * run + k] = flat[start + k]


@numba.njit(fastmath=_FASTMATH, boundscheck=False)
def _conv_relu(x, weight, bias, windows, out, pad):
    """x: zero-padded input (HP, WP, C_in); weight (C_out, KH, KW*C_in), C_out a multiple of 4;
    windows: (2, >= KH*KW*C_in) scratch; writes ReLU(conv) into the interior of ``out``
    (OH + 2*pad, OW + 2*pad, C_out), the next layer's padded input.

    Output positions go two at a time (the last one twice when their number is odd) and output
    channels four at a time: 8 sums in registers, each weight loaded once for two positions and
    each input once for four channels."""
    _, padded_w, in_c = x.shape
    out_c, kernel, run = weight.shape  # run: KW*C_in contiguous floats per kernel row
    depth = kernel * run
    weight = weight.reshape(out_c, depth)
    out_h = out.shape[0] - 2 * pad
    out_w = out.shape[1] - 2 * pad
    flat = x.reshape(-1)
    row_step = padded_w * in_c
    positions = out_h * out_w
    u = windows[0]
    v = windows[1]
    for p in range(0, positions, 2):
        q = min(p + 1, positions - 1)
        ph, pw = divmod(p, out_w)
        qh, qw = divmod(q, out_w)
        _gather(flat, CONV_STRIDE * (ph * row_step + pw * in_c), row_step, kernel, run, u)
        _gather(flat, CONV_STRIDE * (qh * row_step + qw * in_c), row_step, kernel, run, v)
        target_p = out[ph + pad, pw + pad]
        target_q = out[qh + pad, qw + pad]
        for co in range(0, out_c, 4):
            w0 = weight[co]
            w1 = weight[co + 1]
            w2 = weight[co + 2]
            w3 = weight[co + 3]
            p0 = q0 = bias[co]
            p1 = q1 = bias[co + 1]
            p2 = q2 = bias[co + 2]
            p3 = q3 = bias[co + 3]
            for k in range(depth):
                a = u[k]
                b = v[k]
                p0 += a * w0[k]
                p1 += a * w1[k]
                p2 += a * w2[k]
                p3 += a * w3[k]
                q0 += b * w0[k]
                q1 += b * w1[k]
                q2 += b * w2[k]
                q3 += b * w3[k]
            target_p[co] = max(p0, 0.0)
            target_p[co + 1] = max(p1, 0.0)
            target_p[co + 2] = max(p2, 0.0)
            target_p[co + 3] = max(p3, 0.0)
            target_q[co] = max(q0, 0.0)
            target_q[co + 1] = max(q1, 0.0)
            target_q[co + 2] = max(q2, 0.0)
            target_q[co + 3] = max(q3, 0.0)


@numba.njit(fastmath=_FASTMATH, boundscheck=False)
def _conv_relu_narrow(x, weight, bias, windows, out, pad):
    """``_conv_relu`` for windows too short to vectorize along (conv1: 3*3*1 = 9 taps): the
    inner loop runs along the output channels instead, weight is (KH, KW*C_in, C_out)."""
    _, padded_w, in_c = x.shape
    kernel, run, out_c = weight.shape
    depth = kernel * run
    weight = weight.reshape(depth, out_c)
    window = windows[0]
    out_h = out.shape[0] - 2 * pad
    out_w = out.shape[1] - 2 * pad
    flat = x.reshape(-1)
    row_step = padded_w * in_c
    for oh in range(out_h):
        for ow in range(out_w):
            corner = CONV_STRIDE * (oh * row_step + ow * in_c)
            _gather(flat, corner, row_step, kernel, run, window)
            target = out[oh + pad, ow + pad]
            for co in range(out_c):
                target[co] = bias[co]
            for k in range(depth):
                value = window[k]
                for co in range(out_c):
                    target[co] += value * weight[k, co]
            for co in range(out_c):
                target[co] = max(target[co], 0.0)


@numba.njit(fastmath=_FASTMATH, boundscheck=False)
def _linear(x, weight, bias, out, relu):
    """x (F,), weight (O, F), O even -> out (O,) = weight @ x + bias, ReLU if ``relu``."""
    for o in range(0, weight.shape[0], 2):
        w0 = weight[o]
        w1 = weight[o + 1]
        a0 = bias[o]
        a1 = bias[o + 1]
        for f in range(x.shape[0]):
            a0 += x[f] * w0[f]
            a1 += x[f] * w1[f]
        if relu:
            a0 = max(a0, 0.0)
            a1 = max(a1, 0.0)
        out[o] = a0
        out[o + 1] = a1


@numba.njit(fastmath=_FASTMATH, boundscheck=False)
def _forward(
    images,
    w1,
    b1,
    w2,
    b2,
    w3,
    b3,
    fc1,
    fc1_b,
    fc2,
    fc2_b,
    in1,
    in2,
    in3,
    feats,
    hidden,
    windows,
    logits,
):
    """images (N, H, W) -> logits (N, 10), one image at a time through the preallocated buffers."""
    height, width = images.shape[1:]
    for n in range(images.shape[0]):
        for h in range(height):
            for w in range(width):
                in1[h + CONV_PADDING, w + CONV_PADDING, 0] = images[n, h, w]
        _conv_relu_narrow(in1, w1, b1, windows, in2, CONV_PADDING)
        _conv_relu(in2, w2, b2, windows, in3, CONV_PADDING)
        _conv_relu(in3, w3, b3, windows, feats, 0)
        _linear(feats.reshape(-1), fc1, fc1_b, hidden, True)
        _linear(hidden, fc2, fc2_b, logits[n], False)


class NumbaLoopsBackend(Backend):
    name = "numba_loops"

    def __init__(self, arrays: dict[str, np.ndarray], architecture: Architecture) -> None:
        if architecture != SEED:
            raise ValueError("numba_loops runs the seed network only")
        super().__init__(arrays, architecture)
        parameters = []
        buffers = []  # each conv layer's zero-padded HWC input, then conv3's output, fc1's output
        for layer in architecture.feature_layers:
            weight = arrays[f"{layer.name}.weight"]  # (C_out, C_in, KH, KW)
            out_c, in_c, kh, kw = weight.shape
            if out_c % 4:
                raise ValueError(f"{layer.name}: {out_c} output channels, not a multiple of 4")
            hwc = weight.transpose(0, 2, 3, 1).reshape(out_c, kh, kw * in_c)
            if layer is architecture.feature_layers[0]:  # see _conv_relu_narrow
                hwc = hwc.transpose(1, 2, 0)
            parameters += [
                aligned_copy(hwc),
                aligned_copy(arrays[f"{layer.name}.bias"]),
            ]
            channels, height, width = layer.in_shape
            p = CONV_PADDING
            buffers.append(aligned_zeros((height + 2 * p, width + 2 * p, channels)))
        channels, height, width = layer.out_shape
        buffers.append(aligned_zeros((height, width, channels)))
        parameters += [
            aligned_copy(architecture.first_linear_hwc_columns(arrays["fc1.weight"])),
            aligned_copy(arrays["fc1.bias"]),
        ]
        parameters += [aligned_copy(arrays["fc2.weight"]), aligned_copy(arrays["fc2.bias"])]
        for name in ("fc1.weight", "fc2.weight"):
            if len(arrays[name]) % 2:
                raise ValueError(f"{name}: an odd number of outputs")
        buffers.append(aligned_zeros((len(arrays["fc1.weight"]),)))
        depth = max(
            w.size // len(b) for w, b in zip(parameters[:6:2], parameters[1:6:2], strict=True)
        )
        buffers.append(aligned_zeros((2, depth)))  # two conv windows
        self._arguments = (*parameters, *buffers)
        started = time.perf_counter()
        example = self._images(np.zeros((1, *architecture.input_shape), dtype=np.float32))
        _forward.compile(
            tuple(numba.typeof(a) for a in (example, *self._arguments, self._logits(1)))
        )
        self.compile_s = time.perf_counter() - started

    @staticmethod
    def _images(x: np.ndarray) -> np.ndarray:
        return x.reshape(len(x), *x.shape[2:])  # (N, H, W): one channel

    def _logits(self, n: int) -> np.ndarray:
        return np.empty((n, self.architecture.classes), dtype=np.float32)

    def _forward(self, x: np.ndarray) -> np.ndarray:
        logits = self._logits(len(x))
        _forward(self._images(x), *self._arguments, logits)
        return logits
