"""Time the im2col convolution ops against torch on the seed network's conv layers.

    python -m cnnbench.bench.ops [--batch-size 128] [--repeats 20] [--threads 1]

Prints, per layer, the median forward and backward time of ``conv2d_im2col`` /
``conv2d_backward_im2col`` (float32) next to ``torch.nn.functional.conv2d`` and its autograd
backward (dx, dw, db), and the ratios.  The NumPy backward recomputes the column matrix from
``x`` (its signature takes no cache), so its time includes that; torch's backward reuses the
graph its forward saved.  Not a test: numbers depend on the machine and its load.
"""

from __future__ import annotations

import argparse

import numpy as np
import torch

from cnnbench.common.numerics import max_norm_relative_error
from cnnbench.common.runtime import set_threads
from cnnbench.common.timing import median_seconds
from cnnbench.network.architecture import SEED, Layer
from cnnbench.ops import conv2d_backward_im2col, conv2d_im2col


def bench_layer(
    layer: Layer,
    x: np.ndarray,
    w: np.ndarray,
    b: np.ndarray,
    repeats: int,
    rng: np.random.Generator,
) -> dict[str, float]:
    """Median seconds of NumPy and torch forward and backward for one conv layer."""
    geometry = {"stride": layer.stride, "padding": layer.padding}
    y = conv2d_im2col(x, w, b, **geometry)
    dy = rng.standard_normal(y.shape, dtype=np.float32)
    x_t, w_t, b_t = (torch.tensor(a, requires_grad=True) for a in (x, w, b))
    y_t = torch.nn.functional.conv2d(x_t, w_t, b_t, **geometry)
    dy_t = torch.from_numpy(dy)

    def torch_backward() -> tuple[torch.Tensor, ...]:
        return torch.autograd.grad(y_t, (x_t, w_t, b_t), dy_t, retain_graph=True)

    # timings of wrong results would mean nothing: check agreement first (this also serves as
    # every timed function's warm-up call)
    for ours, theirs in zip(
        (y, *conv2d_backward_im2col(dy, x, w, **geometry)),
        (y_t.detach(), *torch_backward()),
        strict=True,
    ):
        error = max_norm_relative_error(ours, theirs.numpy())
        if error > 1e-4:
            raise RuntimeError(f"im2col and torch disagree (max-norm relative error {error:.2e})")
    with torch.no_grad():
        torch_forward_s = median_seconds(
            lambda: torch.nn.functional.conv2d(x_t, w_t, b_t, **geometry), repeats
        )
    return {
        "numpy_forward": median_seconds(lambda: conv2d_im2col(x, w, b, **geometry), repeats),
        "torch_forward": torch_forward_s,
        "numpy_backward": median_seconds(
            lambda: conv2d_backward_im2col(dy, x, w, **geometry), repeats
        ),
        "torch_backward": median_seconds(torch_backward, repeats),
    }


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="python -m cnnbench.bench.ops", description=__doc__.splitlines()[0]
    )
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--repeats", type=int, default=20)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    set_threads(args.threads)
    rng = np.random.default_rng(args.seed)

    print(
        f"conv layers, batch {args.batch_size}, float32, {args.threads} thread(s), "
        f"median of {args.repeats} (ms)"
    )
    header = (
        "layer",
        "input",
        "im2col fwd",
        "torch fwd",
        "ratio",
        "im2col bwd",
        "torch bwd",
        "ratio",
    )
    print("{:<6} {:<14} {:>10} {:>10} {:>6} {:>10} {:>10} {:>6}".format(*header))
    x = rng.random((args.batch_size, *SEED.input_shape), dtype=np.float32)
    totals = dict.fromkeys(
        ("numpy_forward", "torch_forward", "numpy_backward", "torch_backward"), 0.0
    )
    for layer in SEED.feature_layers:
        shape = layer.parameter_shapes[f"{layer.name}.weight"]
        w = (rng.standard_normal(shape) / np.sqrt(np.prod(shape[1:]))).astype(np.float32)
        b = (0.1 * rng.standard_normal(shape[0])).astype(np.float32)
        times = bench_layer(layer, x, w, b, args.repeats, rng)
        for key, seconds in times.items():
            totals[key] += seconds
        print(_row(layer.name, "x".join(map(str, x.shape[1:])), times))
        x = np.maximum(conv2d_im2col(x, w, b, stride=layer.stride, padding=layer.padding), 0)
    print(_row("total", "", totals))


def _row(layer: str, shape: str, times: dict[str, float]) -> str:
    ms = {key: 1e3 * seconds for key, seconds in times.items()}
    return (
        f"{layer:<6} {shape:<14} {ms['numpy_forward']:>10.2f} {ms['torch_forward']:>10.2f} "
        f"{ms['numpy_forward'] / ms['torch_forward']:>6.2f} {ms['numpy_backward']:>10.2f} "
        f"{ms['torch_backward']:>10.2f} {ms['numpy_backward'] / ms['torch_backward']:>6.2f}"
    )


if __name__ == "__main__":
    main()
