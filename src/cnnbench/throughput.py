"""Batched throughput: images per second of each backend at each batch size.

For every (backend, batch size): one untimed warm-up batch, then ``repeats`` timed passes over the
same images in batches of that size; ``seconds`` is the median pass. The loop backends cost
milliseconds to a second per image whatever the batch, so they run on at most ``loop_images``
images, and a batch size above that is measured as one batch of all of them.
"""

from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path

import numpy as np
import pandas as pd

from cnnbench import backends
from cnnbench.data import load_split, to_model_input
from cnnbench.inference import FLOAT_FORMAT
from cnnbench.runtime import atomic_output, set_threads

COLUMNS = ["backend", "batch_size", "images", "seconds", "images_per_s", "repeats"]


def time_batches(backend: backends.Backend, x: np.ndarray, batch_size: int, repeats: int) -> float:
    """Median over ``repeats`` of the seconds to predict all of ``x`` in batches of ``batch_size``."""
    backend.predict(x[:batch_size])  # warm-up: buffers for this batch size, caches
    seconds = []
    for _ in range(repeats):
        started = time.perf_counter()
        for start in range(0, len(x), batch_size):
            backend.predict(x[start : start + batch_size])
        seconds.append(time.perf_counter() - started)
    return statistics.median(seconds)


def measure(
    names: list[str],
    weights: str | Path,
    x: np.ndarray,
    batch_sizes: list[int],
    loop_images: int,
    repeats: int,
) -> pd.DataFrame:
    rows = []
    for name in names:
        backend = backends.load(name, weights)
        sample = x[:loop_images] if name in backends.SLOW else x
        # a batch larger than the sample is the whole sample: measure that once
        for batch_size in sorted({min(size, len(sample)) for size in batch_sizes}):
            seconds = time_batches(backend, sample, batch_size, repeats)
            rows.append(
                {
                    "backend": name,
                    "batch_size": batch_size,
                    "images": len(sample),
                    "seconds": seconds,
                    "images_per_s": len(sample) / seconds,
                    "repeats": repeats,
                }
            )
    return pd.DataFrame(rows, columns=COLUMNS)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m cnnbench.throughput", description=__doc__)
    parser.add_argument("--weights", required=True, type=Path)
    parser.add_argument("--test-images", required=True, type=Path)
    parser.add_argument("--test-labels", required=True, type=Path)
    parser.add_argument(
        "--backends", nargs="+", default=list(backends.NAMES), choices=backends.NAMES
    )
    parser.add_argument("--batch-sizes", nargs="+", type=int, default=[1, 32, 1000])
    parser.add_argument("--images", type=int, default=None, help="test images to use; default all")
    parser.add_argument("--loop-images", type=int, default=64)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--out", required=True, type=Path)
    args = parser.parse_args(argv)
    for option in ("images", "loop_images", "repeats"):
        value = getattr(args, option)
        if value is not None and value < 1:
            parser.error(f"--{option.replace('_', '-')} must be >= 1, got {value}")
    if min(args.batch_sizes) < 1:
        parser.error(f"--batch-sizes must all be >= 1, got {args.batch_sizes}")
    set_threads(args.threads)
    images, _ = load_split(args.test_images, args.test_labels)
    x = to_model_input(images[: args.images])
    table = measure(
        args.backends, args.weights, x, args.batch_sizes, args.loop_images, args.repeats
    )
    with atomic_output(args.out) as temporary:
        table.to_csv(temporary, index=False, float_format=FLOAT_FORMAT)


if __name__ == "__main__":
    main()
