"""Side-by-side benchmark of every backend: latency at batch 1, throughput at a large batch.

``python -m cnnbench.bench --weights results/model/weights.npz`` loads all backends in one process
with an explicit thread count (default 1), then measures in interleaved rounds (each round times
every backend once, one after another, never two at once), so a change in machine load hits all
backends alike. Prints medians, ratios to ``torch``, the BLAS kernel in use, the load average
before and after, and numpy_im2col's time per stage. A benchmark to read, not a test.
"""

from __future__ import annotations

import argparse
import collections
import os
import statistics
import time
from pathlib import Path

import numpy as np

from cnnbench import backends
from cnnbench.data import load_split, to_model_input
from cnnbench.errors import UserError
from cnnbench.geometry import NUM_CLASSES
from cnnbench.ops import Im2colInference
from cnnbench.runtime import load_average, set_threads
from cnnbench.timing import timed_predictions
from cnnbench.weights import verify_exported


def batch_seconds_per_image(backend: backends.Backend, x: np.ndarray) -> float:
    started = time.perf_counter()
    backend.predict(x)
    return (time.perf_counter() - started) / len(x)


def stage_times(network: Im2colInference, x: np.ndarray, rounds: int) -> dict[str, float]:
    """Median seconds per image of each stage of numpy_im2col's forward pass on batch ``x``."""
    logits = np.empty((len(x), NUM_CLASSES), dtype=np.float32)
    samples = collections.defaultdict(list)
    for _ in range(rounds):
        totals: dict[str, float] = collections.defaultdict(float)
        before = time.perf_counter()
        for stage in network.stages(x, logits):
            now = time.perf_counter()
            totals[stage] += now - before
            before = now
        for stage, seconds in totals.items():
            samples[stage].append(seconds / len(x))
    return {stage: statistics.median(values) for stage, values in samples.items()}


def flops_per_image(network: Im2colInference) -> int:
    """2 x multiply-adds of every layer (each matrix's last row is the bias)."""
    conv = sum(
        2
        * layer.out_shape[0]
        * layer.out_shape[1]
        * (layer.matrix.shape[0] - 1)
        * layer.matrix.shape[1]
        for layer in network.layers
    )
    return conv + sum(2 * (m.shape[0] - 1) * m.shape[1] for m in (network.fc1, network.fc2))


def matmul_gflops(size: int = 1024, rounds: int = 5) -> float:
    """Best single-call float32 matrix-multiply rate (GFLOP/s) on ``size``-cubed operands."""
    a = np.random.default_rng(0).random((size, size), dtype=np.float32)
    out = np.empty_like(a)
    np.matmul(a, a, out=out)
    best = float("inf")
    for _ in range(rounds):
        started = time.perf_counter()
        np.matmul(a, a, out=out)
        best = min(best, time.perf_counter() - started)
    return 2 * size**3 / best / 1e9


def blas_description() -> str:
    from threadpoolctl import threadpool_info

    blas = [
        f"{lib['internal_api']} {lib.get('version')} kernel {lib.get('architecture')} "
        f"threads {lib['num_threads']}"
        for lib in threadpool_info()
        if lib["user_api"] == "blas"
    ]
    tuning = {k: v for k, v in os.environ.items() if k in ("OPENBLAS_CORETYPE", "OPENBLAS_L2_SIZE")}
    return f"{'; '.join(blas)}; environment {tuning or 'has no OPENBLAS_CORETYPE/L2_SIZE'}"


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m cnnbench.bench", description=__doc__)
    parser.add_argument("--weights", required=True, type=Path)
    parser.add_argument(
        "--manifest",
        type=Path,
        help="the export's manifest.json the weights are checked against "
        "(default: the one beside the weights, when present)",
    )
    parser.add_argument(
        "--test-images", type=Path, default=Path("results/data/t10k-images-idx3-ubyte.gz")
    )
    parser.add_argument(
        "--test-labels", type=Path, default=Path("results/data/t10k-labels-idx1-ubyte.gz")
    )
    parser.add_argument(
        "--backends", nargs="+", default=list(backends.NAMES), choices=backends.NAMES
    )
    parser.add_argument("--images", type=int, default=200, help="batch-1 images per round")
    parser.add_argument("--batch-size", type=int, default=1000)
    parser.add_argument("--loop-images", type=int, default=2, help="images for numpy_loops")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args(argv)
    if backends.REFERENCE not in args.backends:
        parser.error(f"--backends must include {backends.REFERENCE}, the reference for the ratios")

    set_threads(args.threads)
    try:  # a fault in the user's files: one line, no traceback
        manifest = args.manifest or args.weights.with_name("manifest.json")
        if args.manifest or manifest.is_file():
            verify_exported(args.weights, manifest)
        images, _ = load_split(args.test_images, args.test_labels)
        loaded = {name: backends.load(name, args.weights) for name in args.backends}
    except UserError as error:
        parser.exit(2, f"{parser.prog}: error: {error}\n")
    x = to_model_input(images[: max(args.images, args.batch_size)])
    # slow backends (seconds per image) get a smaller sample
    sizes = {name: args.loop_images if name in backends.SLOW else args.images for name in loaded}
    batches = {
        name: args.loop_images if name in backends.SLOW else args.batch_size for name in loaded
    }
    print(f"threads {args.threads}; {blas_description()}; load average {load_average()}")
    for name, backend in loaded.items():
        if backend.compile_s is not None:
            print(f"{name}: compiled in {backend.compile_s:.2f} s (excluded from timings)")

    for name, backend in loaded.items():  # warm-up: buffers, caches, lazy initialisation
        backend.predict(x[:1])
        backend.predict(x[: batches[name]])
    latency = collections.defaultdict(list)
    throughput = collections.defaultdict(list)
    for _ in range(args.rounds):
        for name, backend in loaded.items():
            sample = x[: sizes[name]]
            latency[name] += timed_predictions(backend.predict, range(len(sample)), sample)[
                1
            ].tolist()
            throughput[name].append(batch_seconds_per_image(backend, x[: batches[name]]))

    reference_latency = statistics.median(latency[backends.REFERENCE])
    reference_batch = statistics.median(throughput[backends.REFERENCE])
    print(
        f"\n{'backend':14} {'batch 1 median':>15} {'vs torch':>9}   "
        f"{'batch':>5} {'per image':>11} {'images/s':>10} {'vs torch':>9}"
    )
    for name in loaded:
        median_latency = statistics.median(latency[name])
        per_image = statistics.median(throughput[name])
        print(
            f"{name:14} {median_latency * 1e6:12.1f} us {median_latency / reference_latency:8.2f}x   "
            f"{batches[name]:5d} {per_image * 1e6:8.1f} us {1 / per_image:10.0f} "
            f"{per_image / reference_batch:8.2f}x"
        )
    print("(ratios: time per image relative to torch; below 1 is faster)")
    if {"numba_loops", "numpy_im2col"} <= loaded.keys():
        ratio = statistics.median(latency["numba_loops"]) / statistics.median(
            latency["numpy_im2col"]
        )
        print(f"numba_loops / numpy_im2col at batch 1: {ratio:.2f}x")

    if "numpy_im2col" in loaded:
        im2col = loaded["numpy_im2col"].network
        flops = flops_per_image(im2col)
        peak = matmul_gflops()
        print(
            f"\nfloor: {flops / 1e6:.2f} MFLOP per image at this BLAS's large-matmul rate "
            f"({peak:.0f} GFLOP/s) is {flops / peak / 1e3:.1f} us"
        )
        for batch in (x[:1], x[: args.batch_size]):
            # batch 1 is ~100 us: many more rounds for a stable median
            stages = stage_times(im2col, batch, args.rounds * (100 if len(batch) == 1 else 1))
            total = sum(stages.values())
            print(
                f"\nnumpy_im2col stages, batch {len(batch)}: {total * 1e6:.1f} us per image "
                f"({flops / total / 1e9:.1f} GFLOP/s, {flops / total / 1e9 / peak:.0%} of the matmul rate)"
            )
            for stage, seconds in stages.items():
                print(f"  {stage:14} {seconds * 1e6:8.1f} us {seconds / total:6.1%}")
    print(f"\nload average after: {load_average()}")


if __name__ == "__main__":
    main()
