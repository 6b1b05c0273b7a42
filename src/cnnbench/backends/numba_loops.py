"""numba_loops: the network as explicit scalar loops, compiled by numba.

The algorithm is the loop network's (``cnnbench.ops``: one scalar multiply-add per weight and output
position, no matrix library), so comparing with ``numpy_loops`` separates interpreter overhead from
algorithm. Sums run in float32 (ops' loops use Python's doubles) and, as the issue allows, not in
the loops' order (``fastmath`` reassociation).

A conv layer of a multiple of ``BLOCK_CHANNELS`` (32) output channels (every conv of the seed
network) is computed as outer products: ``BLOCK_POSITIONS`` (8) output positions by 32 output
channels, 256 sums, each a named local in ``_block`` (generated source: only scalars stay in
registers, array elements are loads and stores), added to one window tap at a time, the weights
laid out (KH*KW*C_in, C_out) so a tap's 32 weights are two 16-lane vectors. Compiled with LLVM's
SLP vectoriser on and its loop vectoriser off, the 256 sums become 16 vector registers and each
tap 2 weight loads, 8 broadcasts of the positions' input values and 16 vector multiply-adds, no
horizontal sums: 112-115 GFLOP/s with hot caches, where the dot-product form below reaches 89-95
(its sums end in a horizontal reduction each). Where LLVM's tuning for the CPU prefers 256-bit
vectors (several AVX-512 Intel CPUs), the 256 sums would take all 32 registers and spill, so
numba is told to use the whole width (``common.runtime.numba_full_width_vectors``). The windows
are read in place (each tap's offset from its window's corner in a small table), not copied.
``_block`` is compiled on its own and
``_run`` calls it through its address (``numba.cfunc``; the address is an argument of ``_run``,
so that ``_run`` can be cached): compiled into ``_run`` it would be optimised again with
``_run``'s settings, which vectorise along the taps. Positions beyond a multiple of 8 go through
``_block`` compiled for one position.

Any other conv: each output is a dot product of a weight row with an input window, compiled with
``fastmath`` reassociation so LLVM splits the sum over several vector accumulators that stay in
registers. Each pass over the windows computes two output positions times four output channels
(8 sums), so every weight loaded feeds two multiply-adds and every input value four (output
channels beyond a multiple of 4 go one at a time, linear layers two outputs at a time and an odd
last one alone). A window of fewer than ``NARROW_DEPTH`` taps is too short to vectorize along, so
that layer's inner loop runs along the output positions instead: its windows are copied once,
transposed (tap by tap, every position's value in a row), and each output channel's sums at all
positions are one row, four taps added per pass over it, then written out channel by channel in
HWC order.
Pooling takes the max (or the sum, divided by the KH*KW taps, padded zeros counted as
``torch.nn.AvgPool2d`` counts them) tap by tap, the inner loop along the channels.

Any architecture runs through one compiled function, ``_run``: the network is a table of integers
(one row per layer: kind, shapes, kernel, stride, where its input, output and parameters lie) and
two flat arrays, the activations and the parameters, so nothing is compiled per architecture:
numba compiles once (at load, reported as ``compile_s``: about 10 s) and the shapes are runtime
values, as they were when this backend ran the seed network only. The machine code is cached on
disk (numba's ``cache=True``: under NUMBA_CACHE_DIR if set, else in ``__pycache__`` beside this
module, with the generated ``_block`` sources), so a later process loads it instead
(``compile_s`` well under a second); numba compiles again when this file changes (it compares
the file's modification time and size). ``_run`` runs a range of layers over a batch, one image
at a time; ``predict`` runs them all, ``stages`` one each, the same machine code either way.

Layout, chosen so every inner loop runs over contiguous memory without branches:

- activations are HWC and held in padded buffers (borders written once, at load: zeros, or -inf
  before max pooling), so a window is KH contiguous runs of KW*C_in floats and the padding needs
  no bounds tests; each layer writes into the interior of the next layer's input buffer;
- conv weights are (C_out, KH*KW*C_in) ((KH*KW*C_in, C_out) for the blocked and narrow kinds), the
  first linear layer's columns are permuted to the HWC flattening;
- every weight and buffer starts on a 64-byte boundary (a cache line).

Why the version before the last varied between fresh processes (155-267 us per image, same code):
alignment. NumPy places small arrays 16-byte aligned, at addresses that differ between processes;
that version's inner loop read and wrote the output row in memory for every multiply-add vector
(``out[oh, ow, co] += a * w[..., co]``), so when its arrays sat at 16 mod 32 bytes half of the
32-byte AVX2 loads and stores straddled cache lines. Measured in one process with that version's
kernel and the same weights copied to chosen addresses (6 rounds of 300 images, load ~9 on 2
cores): every array 64-byte aligned 192 us median per image, every array at 16 mod 32 bytes 293 us
(1.5x), every array at the same offset in its 4 KiB page (4K aliasing) 197 us, no slower. Every
weight and buffer is 64-byte aligned since, and the sums stay in registers.
"""

from __future__ import annotations

import contextlib
import hashlib
import importlib.util
import os
import sys
import tempfile
import time
from functools import cache, partial
from pathlib import Path

import llvmlite.ir
import numba
import numpy as np

from cnnbench.backends import Backend, Stage
from cnnbench.common.runtime import numba_full_width_vectors
from cnnbench.network.architecture import CONV, LINEAR, MAXPOOL, Architecture, Layer

numba_full_width_vectors()  # before the first @numba.njit below

# reassociation (sums split over vector accumulators), contraction (fused multiply-add), no signed
# zeros (so max(x, 0) needs no sign care); no assumptions about NaN or infinity
_FASTMATH = {"reassoc", "contract", "nsz"}
_ALIGNMENT = 16  # float32 values: 64 bytes, one cache line, two AVX2 vectors
NARROW_DEPTH = 16  # taps per window below which a conv loops along its output channels

# the outer-product conv's block: output positions by output channels (C_out a multiple of it);
# 4 x 64 and 6 x 32 measured 1-3 % slower on the seed network, 12 x 16 much slower (its conv3
# has 16 positions: 12 in a block and 4 one at a time)
BLOCK_POSITIONS, BLOCK_CHANNELS = 8, 32

# layer kinds in the table
_CONV, _CONV_NARROW, _MAXPOOL, _AVGPOOL, _LINEAR, _CONV_BLOCKED = range(6)
# the table's columns: the layer's kind; its input buffer (offset in the activations, padded
# height, width, channels, padding); its output buffer (the same; the output's own height and
# width); kernel, stride; its weight's and bias's offsets in the parameters; ReLU (0 or 1)
(
    KIND,
    IN_OFFSET,
    IN_HEIGHT,
    IN_WIDTH,
    IN_CHANNELS,
    IN_PADDING,
    OUT_OFFSET,
    OUT_HEIGHT,
    OUT_WIDTH,
    OUT_CHANNELS,
    OUT_PADDING,
    ROWS,
    COLUMNS,
    KERNEL_H,
    KERNEL_W,
    STRIDE,
    WEIGHT,
    BIAS,
    RELU,
) = range(19)


def aligned_zeros(size: int) -> np.ndarray:
    """A float32 zero array of ``size`` values starting on a 64-byte boundary."""
    raw = np.zeros(size + _ALIGNMENT, dtype=np.float32)
    offset = (-raw.ctypes.data % (4 * _ALIGNMENT)) // 4
    return raw[offset : offset + size]


class _Arena:
    """Places arrays one after another, each at a multiple of 64 bytes, in one flat array."""

    def __init__(self) -> None:
        self.size = 0
        self.pieces: list[tuple[int, np.ndarray]] = []

    def place(self, values: np.ndarray) -> int:
        """Where ``values`` (flattened) will lie in :meth:`array`."""
        offset = self.size
        self.pieces.append((offset, values))
        self.size += -(-values.size // _ALIGNMENT) * _ALIGNMENT
        return offset

    def array(self) -> np.ndarray:
        flat = aligned_zeros(self.size)
        for offset, values in self.pieces:
            flat[offset : offset + values.size] = values.ravel()
        return flat


@numba.njit(fastmath=_FASTMATH, boundscheck=False, cache=True)
def _geometry(row):
    """A conv or pooling layer's output padding, output height and width, kernel height, stride."""
    return row[OUT_PADDING], row[ROWS], row[COLUMNS], row[KERNEL_H], row[STRIDE]


@numba.njit(fastmath=_FASTMATH, boundscheck=False, cache=True)
def _gather(flat, corner, row_step, kernel, run, window):
    """Copy the KH runs of KW*C_in floats of one output position's window into ``window``.

    Through slices, indexed by the loop counter alone: an index the compiler cannot prove
    non-negative (``kh * run + k``) keeps NumPy's negative-index wraparound test in the loop and
    leaves it scalar (the seed's conv2 spent 7 us per image copying its windows, 2 us now)."""
    for kh in range(kernel):
        start = corner + kh * row_step
        source = flat[start : start + run]
        target = window[kh * run : kh * run + run]
        for k in range(run):
            target[k] = source[k]


@numba.njit(fastmath=_FASTMATH, boundscheck=False, cache=True)
def _conv_relu(x, weight, bias, windows, out, row):
    """x: padded input (HP, WP, C_in); weight (C_out, KH*KW*C_in); windows: (2, >= KH*KW*C_in)
    scratch; writes ReLU(conv) into the interior of ``out``, the next layer's padded input; the
    geometry from the layer's table ``row``.

    Output positions go two at a time (the last one twice when their number is odd) and output
    channels four at a time: 8 sums in registers, each weight loaded once for two positions and
    each input once for four channels; channels beyond a multiple of four one at a time."""
    pad, out_h, out_w, kernel, stride = _geometry(row)
    _, padded_w, in_c = x.shape
    out_c, depth = weight.shape
    run = depth // kernel  # KW*C_in contiguous floats per kernel row
    blocked = out_c - out_c % 4
    flat = x.reshape(-1)
    row_step = padded_w * in_c
    positions = out_h * out_w
    half = windows.size // 2 - windows.size // 2 % _ALIGNMENT
    u = windows[:depth]
    v = windows[half : half + depth]
    for p in range(0, positions, 2):
        q = min(p + 1, positions - 1)
        ph, pw = divmod(p, out_w)
        qh, qw = divmod(q, out_w)
        _gather(flat, stride * (ph * row_step + pw * in_c), row_step, kernel, run, u)
        _gather(flat, stride * (qh * row_step + qw * in_c), row_step, kernel, run, v)
        target_p = out[ph + pad, pw + pad]
        target_q = out[qh + pad, qw + pad]
        for co in range(0, blocked, 4):
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
        for co in range(blocked, out_c):
            w0 = weight[co]
            p0 = q0 = bias[co]
            for k in range(depth):
                p0 += u[k] * w0[k]
                q0 += v[k] * w0[k]
            target_p[co] = max(p0, 0.0)
            target_q[co] = max(q0, 0.0)


@numba.njit(fastmath=_FASTMATH, boundscheck=False, cache=True)
def _conv_relu_narrow(x, weight, bias, scratch, out, row):
    """``_conv_relu`` for windows too short to vectorize along (fewer than NARROW_DEPTH taps):
    the inner loop runs along the output positions instead. weight is (KH*KW*C_in, C_out);
    scratch holds the windows transposed, (taps, positions), then one output channel's values
    at every position, summed four taps at a time."""
    pad, out_h, out_w, kernel, stride = _geometry(row)
    kernel_w = row[KERNEL_W]
    _, padded_w, in_c = x.shape
    depth, out_c = weight.shape
    positions = out_h * out_w
    columns = scratch[: depth * positions].reshape((depth, positions))
    every = scratch[depth * positions : (depth + out_c) * positions].reshape((out_c, positions))
    flat = x.reshape(-1)
    row_step = padded_w * in_c
    for kh in range(kernel):
        for kw in range(kernel_w):
            for ci in range(in_c):
                tap = columns[(kh * kernel_w + kw) * in_c + ci]
                offset = kh * row_step + kw * in_c + ci
                for oh in range(out_h):
                    start = stride * oh * row_step + offset
                    source = flat[start : start + stride * in_c * out_w : stride * in_c]
                    target = tap[oh * out_w : oh * out_w + out_w]
                    for ow in range(out_w):
                        target[ow] = source[ow]
    whole = depth - depth % 4
    for co in range(out_c):
        sums = every[co]
        b = bias[co]
        for p in range(positions):
            sums[p] = b
        for k in range(0, whole, 4):
            w0 = weight[k, co]
            w1 = weight[k + 1, co]
            w2 = weight[k + 2, co]
            w3 = weight[k + 3, co]
            c0 = columns[k]
            c1 = columns[k + 1]
            c2 = columns[k + 2]
            c3 = columns[k + 3]
            for p in range(positions):
                sums[p] += w0 * c0[p] + w1 * c1[p] + w2 * c2[p] + w3 * c3[p]
        for k in range(whole, depth):
            w0 = weight[k, co]
            c0 = columns[k]
            for p in range(positions):
                sums[p] += w0 * c0[p]
    for oh in range(out_h):
        for ow in range(out_w):
            target = out[oh + pad, ow + pad]
            values = every[:, oh * out_w + ow]
            for co in range(out_c):
                target[co] = max(values[co], 0.0)


def _block_source(positions: int, channels: int) -> str:
    """Source of ``_block``: ReLU(conv) at ``positions`` output positions, every output
    channel, ``channels`` at a time. Position p's window tap k is ``x[corners[p] + taps[k]]``
    (x the padded input, flat) and its outputs go to ``out[targets[p]:]``. The
    ``positions`` x ``channels`` sums are named locals (scalars the compiler can keep in
    registers, which array elements are not), added to one tap at a time, so each slice of
    ``channels`` weights is read once for ``positions`` windows and each window value once for
    ``channels`` sums. Generated because only named locals stay in registers. Offsets and
    indices are unsigned: for a signed one numba adds a test for a negative index (Python's
    wraparound) to every load, about 40 scalar instructions a tap beside its 16 multiply-adds
    (conv2 at batch 1: 21.6 us with them, 18.9 without, on a 2-core Xeon)."""
    sums = [[f"s{p}_{c}" for c in range(channels)] for p in range(positions)]
    every = range(positions)
    lines = [
        "import numba",
        "import numpy as np",
        "",
        "",
        "def _block(x_, size_x, corners, taps_, weight, bias, out_c, depth, out_, size, targets):",
        "    x = numba.carray(x_, (size_x,), dtype=np.float32)",
        "    taps = numba.carray(taps_, (depth,), dtype=np.uint64)",
        "    w = numba.carray(weight, (depth * out_c,), dtype=np.float32)",
        "    b = numba.carray(bias, (out_c,), dtype=np.float32)",
        "    out = numba.carray(out_, (size,), dtype=np.float32)",
        f"    c = numba.carray(corners, ({positions},), dtype=np.uint64)",
        f"    t = numba.carray(targets, ({positions},), dtype=np.int64)",
        *(f"    c{p} = c[{p}]" for p in every),
        "    step = numba.uint64(out_c)",
        f"    for co in range(0, out_c, {channels}):",
        f"        first = b[co : co + {channels}]",
        *(f"        {sums[p][c]} = first[{c}]" for p in every for c in range(channels)),
        "        row = numba.uint64(co)",
        "        for k in range(depth):",
        "            tap = taps[k]",
        *(f"            w{c} = w[row + numba.uint64({c})]" for c in range(channels)),
        "            row += step",
    ]
    for p in every:
        lines.append(f"            a = x[c{p} + tap]")
        lines += [f"            {sums[p][c]} += a * w{c}" for c in range(channels)]
    for p in every:
        lines.append(f"        target = out[t[{p}] + co : t[{p}] + co + {channels}]")
        lines += [f"        target[{c}] = max({sums[p][c]}, 0.0)" for c in range(channels)]
    return "\n".join(lines) + "\n"


@contextlib.contextmanager
def _across_channels():
    """Compile with LLVM's SLP vectoriser on (it packs the named sums of ``_block`` into
    vectors, one per BLOCK_CHANNELS / 16 channels and position) and its loop vectoriser off
    (which would otherwise vectorise along the taps first, every sum a dot product again)."""
    saved = numba.config.SLP_VECTORIZE, numba.config.LOOP_VECTORIZE
    numba.config.SLP_VECTORIZE, numba.config.LOOP_VECTORIZE = 1, 0
    try:
        yield
    finally:
        numba.config.SLP_VECTORIZE, numba.config.LOOP_VECTORIZE = saved


# _block as a C function: pointers to the arrays' data, and sizes
_BLOCK_SIGNATURE = numba.types.void(
    numba.types.voidptr,  # x, the padded input
    numba.types.int64,  # its size
    numba.types.voidptr,  # corners
    numba.types.voidptr,  # taps
    numba.types.voidptr,  # weight
    numba.types.voidptr,  # bias
    numba.types.int64,  # C_out
    numba.types.int64,  # depth
    numba.types.voidptr,  # out, the next layer's padded input
    numba.types.int64,  # its size
    numba.types.voidptr,  # targets
)


def _block_folders() -> list[Path]:
    """Where a generated ``_block`` source may be written, the first writable one used, in the
    order numba picks a cache folder: under NUMBA_CACHE_DIR, beside this module, the user's
    cache. No fallback after them: where none is writable, numba cannot cache this module's
    functions either and refuses to import it."""
    cache = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    folders = [Path(__file__).parent / "__pycache__", cache]
    if numba.config.CACHE_DIR:
        folders.insert(0, Path(numba.config.CACHE_DIR))
    return [folder / "cnnbench_numba_loops" for folder in folders]


def _block_file(source: str) -> Path:
    """A file holding ``source``, named by its hash: numba caches only functions a source file
    backs, and an edited block gets a file (and a cache) of its own. Written atomically
    (pipeline jobs start together), left alone once it holds ``source``."""
    name = f"block_{hashlib.sha256(source.encode()).hexdigest()[:16]}.py"
    for folder in _block_folders():
        path = folder / name
        with contextlib.suppress(OSError):
            if path.is_file() and path.read_text() == source:
                return path
            folder.mkdir(parents=True, exist_ok=True)
            with tempfile.NamedTemporaryFile("w", dir=folder, suffix=".tmp", delete=False) as file:
                file.write(source)
            os.replace(file.name, path)
            return path
    raise OSError(f"nowhere to write {name}: set NUMBA_CACHE_DIR to a writable folder")


@cache
def _compile_blocks() -> tuple[numba.core.ccallback.CFunc, numba.core.ccallback.CFunc]:
    """``_block`` for BLOCK_POSITIONS positions and for one, each compiled on its own, as a C
    function that ``_run`` calls through its address (``_call_block``): compiled into ``_run`` it
    would be optimised again with ``_run``'s settings, loop vectoriser on. Cached on disk, so
    the machine code a later process loads is the one compiled under ``_across_channels``."""
    compiled = []
    for positions in (BLOCK_POSITIONS, 1):
        path = _block_file(_block_source(positions, BLOCK_CHANNELS))
        # a module of its own, by a name: loading from the cache imports it by that name
        spec = importlib.util.spec_from_file_location(f"cnnbench_numba_loops_{path.stem}", path)
        module = sys.modules[spec.name] = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        with _across_channels():
            function = numba.cfunc(
                _BLOCK_SIGNATURE, fastmath=_FASTMATH, boundscheck=False, cache=True
            )
            compiled.append(function(module._block))
    return tuple(compiled)


@numba.extending.intrinsic
def _call_block(
    typingctx, address, x, size_x, corners, taps, weight, bias, out_c, depth, out, size, targets
):
    """Call the ``_block`` at ``address`` (a runtime value: a constant address would keep the
    caller out of the cache, and it changes between processes) with its arguments as in
    _BLOCK_SIGNATURE, arrays where it takes pointers to their data."""
    kinds = (x, size_x, corners, taps, weight, bias, out_c, depth, out, size, targets)

    def codegen(context, builder, signature, values):
        arguments = []
        for kind, value, wanted in zip(kinds, values[1:], _BLOCK_SIGNATURE.args, strict=True):
            if isinstance(kind, numba.types.Array):
                data = context.make_array(kind)(context, builder, value).data
                arguments.append(builder.bitcast(data, context.get_value_type(wanted)))
            else:
                arguments.append(context.cast(builder, value, kind, wanted))
        function = llvmlite.ir.FunctionType(
            llvmlite.ir.VoidType(), [argument.type for argument in arguments]
        )
        builder.call(builder.inttoptr(values[0], function.as_pointer()), arguments)
        return context.get_dummy_value()

    return numba.types.void(address, *kinds), codegen


@numba.njit(fastmath=_FASTMATH, boundscheck=False, cache=True)
def _conv_relu_blocked(x, weight, bias, out, row, blocks):
    """``_conv_relu`` as outer products, for C_out a multiple of BLOCK_CHANNELS: weight
    (KH*KW*C_in, C_out); the windows are read in place, no copies. The output positions go
    BLOCK_POSITIONS at a time through ``_block``, the rest one at a time; ``blocks``: the two
    ``_block`` functions' addresses, as ``_compile_blocks`` orders them."""
    pad, out_h, out_w, kernel, stride = _geometry(row)
    kernel_w = row[KERNEL_W]
    _, padded_w, in_c = x.shape
    depth, out_c = weight.shape
    row_step = padded_w * in_c
    run = kernel_w * in_c
    # each tap's offset in x from its window's corner, in the weights' (KH, KW, C_in) order
    taps = np.empty(depth, dtype=np.int64)
    for kh in range(kernel):
        offsets = taps[kh * run : kh * run + run]
        for k in range(run):
            offsets[k] = kh * row_step + k
    positions = out_h * out_w
    whole = positions - positions % BLOCK_POSITIONS
    corners = np.empty(BLOCK_POSITIONS, dtype=np.int64)
    targets = np.empty(BLOCK_POSITIONS, dtype=np.int64)
    out_row = out.shape[1] * out_c
    data = (taps, weight, bias, out_c, depth, out, out.size)
    for p in range(positions):
        i = p % BLOCK_POSITIONS if p < whole else 0
        oh, ow = divmod(p, out_w)
        corners[i] = stride * (oh * row_step + ow * in_c)
        targets[i] = (oh + pad) * out_row + (ow + pad) * out_c
        if p >= whole:
            _call_block(blocks[1], x, x.size, corners, *data, targets)
        elif i == BLOCK_POSITIONS - 1:
            _call_block(blocks[0], x, x.size, corners, *data, targets)


@numba.njit(fastmath=_FASTMATH, boundscheck=False, cache=True)
def _pool(x, out, row, average):
    """Max (``average`` False; x padded with -inf) or average (x padded with zeros, every window
    divided by its KH*KW taps) pooling of x (HP, WP, C) into the interior of ``out``."""
    pad, out_h, out_w, kernel_h, stride = _geometry(row)
    kernel_w = row[KERNEL_W]
    channels = x.shape[2]
    area = kernel_h * kernel_w
    for oh in range(out_h):
        for ow in range(out_w):
            target = out[oh + pad, ow + pad]
            first = x[oh * stride, ow * stride]
            for c in range(channels):
                target[c] = 0.0 if average else first[c]
            for i in range(kernel_h):
                for j in range(kernel_w):
                    tap = x[oh * stride + i, ow * stride + j]
                    if average:
                        for c in range(channels):
                            target[c] += tap[c]
                    else:
                        for c in range(channels):
                            target[c] = max(target[c], tap[c])
            if average:
                for c in range(channels):
                    target[c] /= area


@numba.njit(fastmath=_FASTMATH, boundscheck=False, cache=True)
def _linear(x, weight, bias, out, relu):
    """x (F,), weight (O, F) -> out (O,) = weight @ x + bias, ReLU if ``relu``: two outputs at a
    time, an odd last one alone."""
    outputs = weight.shape[0]
    for o in range(0, outputs - 1, 2):
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
    if outputs % 2:
        o = outputs - 1
        w0 = weight[o]
        a0 = bias[o]
        for f in range(x.shape[0]):
            a0 += x[f] * w0[f]
        out[o] = max(a0, 0.0) if relu else a0


@numba.njit(fastmath=_FASTMATH, boundscheck=False, cache=True)
def _buffer(arena, row, side):
    """A layer's input (side 0) or output (side 1) buffer, (padded height, width, channels)."""
    offset = row[IN_OFFSET + side * (OUT_OFFSET - IN_OFFSET)]
    height = row[IN_HEIGHT + side * (OUT_OFFSET - IN_OFFSET)]
    width = row[IN_WIDTH + side * (OUT_OFFSET - IN_OFFSET)]
    channels = row[IN_CHANNELS + side * (OUT_OFFSET - IN_OFFSET)]
    return arena[offset : offset + height * width * channels].reshape((height, width, channels))


@numba.njit(fastmath=_FASTMATH, boundscheck=False, cache=True)
def _run(source, first, last, table, arena, params, windows, blocks, dest):
    """Layers ``first`` to ``last - 1`` of ``table`` on each row of ``source`` (N, values), into
    ``dest`` (N, values). A row of ``source`` is an image in CHW order if ``first`` is 0, else
    layer ``first``'s input in HWC order (unpadded); a row of ``dest`` is layer ``last - 1``'s
    output in HWC order. ``blocks``: see ``_conv_relu_blocked``."""
    for n in range(source.shape[0]):
        row = table[first]
        x = _buffer(arena, row, 0)
        pad = row[IN_PADDING]
        height = x.shape[0] - 2 * pad
        width = x.shape[1] - 2 * pad
        channels = x.shape[2]
        image = source[n]
        # copies through slices indexed by the loop counter (see _gather)
        if first == 0:  # CHW
            for c in range(channels):
                for h in range(height):
                    values = image[(c * height + h) * width : (c * height + h + 1) * width]
                    target = x[h + pad, pad : pad + width, c]
                    for w in range(width):
                        target[w] = values[w]
        else:  # HWC
            run = width * channels
            for h in range(height):
                values = image[h * run : (h + 1) * run]
                target = x[h + pad].reshape(-1)[pad * channels : pad * channels + run]
                for k in range(run):
                    target[k] = values[k]
        for i in range(first, last):
            row = table[i]
            kind = row[KIND]
            x = _buffer(arena, row, 0)
            out = _buffer(arena, row, 1)
            out_c = row[OUT_CHANNELS]
            bias = params[row[BIAS] : row[BIAS] + out_c]
            if kind == _LINEAR:
                size = x.size
                weight = params[row[WEIGHT] : row[WEIGHT] + out_c * size].reshape((out_c, size))
                _linear(x.reshape(-1), weight, bias, out.reshape(-1), row[RELU] == 1)
            elif kind == _CONV:
                depth = row[KERNEL_H] * row[KERNEL_W] * x.shape[2]
                weight = params[row[WEIGHT] : row[WEIGHT] + out_c * depth].reshape((out_c, depth))
                _conv_relu(x, weight, bias, windows, out, row)
            elif kind == _CONV_BLOCKED:
                depth = row[KERNEL_H] * row[KERNEL_W] * x.shape[2]
                weight = params[row[WEIGHT] : row[WEIGHT] + out_c * depth].reshape((depth, out_c))
                _conv_relu_blocked(x, weight, bias, out, row, blocks)
            elif kind == _CONV_NARROW:
                depth = row[KERNEL_H] * row[KERNEL_W] * x.shape[2]
                weight = params[row[WEIGHT] : row[WEIGHT] + out_c * depth].reshape((depth, out_c))
                _conv_relu_narrow(x, weight, bias, windows, out, row)
            else:
                _pool(x, out, row, kind == _AVGPOOL)
        row = table[last - 1]
        out = _buffer(arena, row, 1)
        pad = row[OUT_PADDING]
        run = row[COLUMNS] * out.shape[2]
        for h in range(row[ROWS]):
            values = out[h + pad].reshape(-1)[pad * out.shape[2] : pad * out.shape[2] + run]
            target = dest[n, h * run : (h + 1) * run]
            for k in range(run):
                target[k] = values[k]


def _kind(layer: Layer) -> int:
    if layer.kind == CONV:
        depth = layer.in_shape[0] * layer.kernel[0] * layer.kernel[1]
        if layer.out_shape[0] % BLOCK_CHANNELS == 0:
            return _CONV_BLOCKED
        return _CONV_NARROW if depth < NARROW_DEPTH else _CONV
    if layer.kind == LINEAR:
        return _LINEAR
    return _MAXPOOL if layer.kind == MAXPOOL else _AVGPOOL


class NumbaLoopsBackend(Backend):
    name = "numba_loops"

    def __init__(self, arrays: dict[str, np.ndarray], architecture: Architecture) -> None:
        super().__init__(arrays, architecture)
        layers = architecture.layers
        activations, parameters = _Arena(), _Arena()
        inputs = []  # each layer's input buffer: offset, padded height, width, channels, padding
        for layer in layers:
            padding = layer.padding or 0
            if layer.kind == LINEAR:
                height, width, channels = 1, 1, layer.in_shape[0]
            else:
                channels, height, width = layer.in_shape
            shape = (height + 2 * padding, width + 2 * padding, channels)
            fill = -np.inf if layer.kind == MAXPOOL else 0.0
            inputs.append((activations.place(np.full(shape, fill)), *shape, padding))
        classes = architecture.classes
        outputs = [*inputs[1:], (activations.place(np.zeros(classes)), 1, 1, classes, 0)]
        # the last feature layer writes its (OH, OW, C) output as the first linear layer's input
        last_feature = len(architecture.feature_layers) - 1
        channels, height, width = layers[last_feature].out_shape
        outputs[last_feature] = (outputs[last_feature][0], height, width, channels, 0)
        table = np.zeros((len(layers), RELU + 1), dtype=np.int64)
        scratch = 1
        for i, layer in enumerate(layers):
            row = table[i]
            row[KIND] = kind = _kind(layer)
            row[IN_OFFSET : IN_PADDING + 1] = inputs[i]
            row[OUT_OFFSET : OUT_PADDING + 1] = outputs[i]
            row[ROWS], row[COLUMNS] = layer.out_shape[1:] if kind != _LINEAR else (1, 1)
            if kind != _LINEAR:
                row[KERNEL_H], row[KERNEL_W] = layer.kernel
                row[STRIDE] = layer.stride
            if kind in (_CONV, _CONV_NARROW, _CONV_BLOCKED, _LINEAR):
                weight = arrays[f"{layer.name}.weight"]
                if layer is architecture.linear_layers[0]:
                    weight = architecture.first_linear_hwc_columns(weight)
                elif kind != _LINEAR:  # (C_out, KH*KW*C_in)
                    weight = weight.transpose(0, 2, 3, 1).reshape(len(weight), -1)
                    span = -(-weight.shape[1] // _ALIGNMENT) * _ALIGNMENT
                    if kind == _CONV:  # two windows
                        scratch = max(scratch, 2 * span)
                    elif kind == _CONV_BLOCKED:  # (taps, C_out)
                        weight = weight.T
                    else:  # every window's taps, then every output channel's sums
                        positions = row[ROWS] * row[COLUMNS]
                        scratch = max(scratch, sum(weight.shape) * positions)
                        weight = weight.T
                row[WEIGHT] = parameters.place(weight)
                row[BIAS] = parameters.place(arrays[f"{layer.name}.bias"])
            row[RELU] = layer.relu
        self._table = table
        self._activations = activations.array()
        self._parameters = parameters.array()
        self._windows = aligned_zeros(scratch)
        # each layer's output values per image (plain ints: no NumPy arithmetic per call)
        self._sizes = [int(r[ROWS] * r[COLUMNS] * r[OUT_CHANNELS]) for r in table]
        started = time.perf_counter()
        # _block's addresses change between processes: arguments, where constants would keep
        # _run out of the cache
        self._blocks = np.array([block.address for block in _compile_blocks()], dtype=np.int64)
        _run.compile(
            tuple(
                numba.typeof(a)
                for a in (
                    np.zeros((1, 1), dtype=np.float32),
                    0,
                    1,
                    *self._arguments,
                    self._blocks,
                    np.zeros((1, 1), dtype=np.float32),
                )
            )
        )
        self.compile_s = time.perf_counter() - started

    @property
    def _arguments(self) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        return self._table, self._activations, self._parameters, self._windows

    def _layers(self, first: int, last: int, source: np.ndarray) -> np.ndarray:
        """Layers ``first`` to ``last - 1`` on ``source`` (see ``_run``), as (N, values)."""
        dest = np.empty((len(source), self._sizes[last - 1]), dtype=np.float32)
        _run(source.reshape(len(source), -1), first, last, *self._arguments, self._blocks, dest)
        return dest

    def _forward(self, x: np.ndarray) -> np.ndarray:
        return self._layers(0, len(self._table), x)

    def _stages(self) -> list[tuple[str, Stage]]:
        return [
            (layer.name, partial(self._stage, i))
            for i, layer in enumerate(self.architecture.layers)
        ]

    def _stage(self, i: int, a: np.ndarray) -> np.ndarray:
        """Layer ``i`` alone: conv and pooling layers return NHWC arrays (N, OH, OW, C)."""
        out = self._layers(i, i + 1, np.ascontiguousarray(a))
        layer = self.architecture.layers[i]
        if layer.kind == LINEAR:
            return out
        channels, height, width = layer.out_shape
        return out.reshape(len(a), height, width, channels)
