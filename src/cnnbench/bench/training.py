"""Training speed: a NumPy epoch against a PyTorch epoch, side by side at one thread count.

    python -m cnnbench.bench.training --mnist-dir DIR [--threads 2] [--images 60000]
        [--batch-size 128] [--repeats 3] [--dtype float32]

Both trainers run the same mini-batches (the first ``--images`` training images, the torch
trainer's first-epoch order) from the same seeded start, alternately (torch, NumPy, torch, ...),
so a change in the machine's load hits both. Timed: the training steps only (forward, backward,
Adam), not the evaluation. Prints each run's seconds, the medians and the ratio NumPy / PyTorch.
"""

from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path

import numpy as np

from cnnbench.common.runtime import set_threads
from cnnbench.data import load_split
from cnnbench.network.architecture import SEED

TRAIN_FILES = ("train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz")


def epoch_seconds(trainer, data, batches) -> float:
    """Seconds ``trainer`` takes for one pass of ``batches`` over ``data``."""
    started = time.perf_counter()
    for batch in batches:
        trainer.step(data.x[batch], data.labels[batch])
    return time.perf_counter() - started


def measure(
    images: np.ndarray,
    labels: np.ndarray,
    batch_size: int,
    repeats: int,
    dtype,
    seed: int = 0,
) -> dict[str, list[float]]:
    """Seconds per epoch of each trainer, ``repeats`` times each, alternating."""
    from cnnbench.training import numpy_trainer as train_numpy
    from cnnbench.training import seeding as train

    data = train_numpy.prepare(images, labels, dtype)
    order = next(train.epoch_orders(len(images), 1, seed))
    batches = [order[start : start + batch_size] for start in range(0, len(order), batch_size)]
    initial = train.initial_weights(seed, SEED)
    makers = {
        "torch": lambda: train_numpy.TorchTrainer(initial, SEED, 1e-3, dtype),
        "numpy": lambda: train_numpy.NumpyTrainer(initial, SEED, 1e-3, dtype),
    }
    for make in makers.values():  # warm up: first calls allocate, load kernels
        epoch_seconds(make(), data, batches[:2])
    seconds: dict[str, list[float]] = {name: [] for name in makers}
    for _ in range(repeats):
        for name, make in makers.items():
            seconds[name].append(epoch_seconds(make(), data, batches))
    return seconds


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="python -m cnnbench.bench.training", description=__doc__.splitlines()[0]
    )
    parser.add_argument("--mnist-dir", type=Path, required=True, help="the four MNIST .gz files")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--images", type=int, default=60000, help="training images per epoch")
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--dtype", choices=("float32", "float64"), default="float32")
    args = parser.parse_args(argv)

    set_threads(args.threads)
    images, labels = load_split(*(args.mnist_dir / name for name in TRAIN_FILES), SEED)
    if not 0 < args.images <= len(images):
        parser.error(f"--images must be in 1..{len(images)}")
    seconds = measure(
        images[: args.images], labels[: args.images], args.batch_size, args.repeats, args.dtype
    )
    medians = {name: statistics.median(values) for name, values in seconds.items()}
    print(
        f"one epoch of {args.images} images, batch {args.batch_size}, {args.dtype}, "
        f"{args.threads} thread(s), {args.repeats} repeats"
    )
    for name, values in seconds.items():
        runs = ", ".join(f"{value:.2f}" for value in values)
        print(f"  {name:6s} median {medians[name]:8.2f} s   (runs: {runs})")
    print(f"  ratio NumPy / PyTorch: {medians['numpy'] / medians['torch']:.2f}")


if __name__ == "__main__":
    main()
