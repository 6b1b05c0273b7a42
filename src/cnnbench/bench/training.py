"""Training speed: a NumPy epoch against a PyTorch epoch, side by side at one thread count.

    python -m cnnbench.bench.training --mnist-dir DIR [--threads 2] [--images 60000]
        [--batch-size 128] [--repeats 3] [--dtype float32] [--interleaved]

Both trainers run the same mini-batches (the first ``--images`` training images, the torch
trainer's first-epoch order) from the same seeded start, alternately (torch, NumPy, torch, ...),
so a change in the machine's load hits both. Timed: the training steps only (forward, backward,
Adam), not the evaluation. Prints each run's seconds, the medians and the ratio NumPy / PyTorch.

``--interleaved``: also the twin run as ``train_numpy`` runs it (``twin_steps``: ``TWIN_BLOCK``
NumPy steps, then PyTorch's on the same batches, each compared with NumPy's parameters after the
same step), and as it ran before, a NumPy step then a PyTorch step, batch by batch. Each repeat
times five passes over the batches: NumPy alone, PyTorch alone, the twin, the twin step by step,
and the twin with OpenBLAS's threads left spinning into the PyTorch steps (as before
``release_blas_threads``). Prints the medians per step and each twin's ratio to the sum of the
two alone (1.0: switching between the libraries costs nothing).

Run as a program, it starts itself again with the train_numpy job's environment
(``MIXED_POOLS_ENVIRONMENT``: torch's OpenMP workers spin 30 000 times, not libgomp's 300 000,
before they sleep), so the twin is measured as the pipeline runs it; a value set beforehand
stays: ``GOMP_SPINCOUNT=300000 python -m cnnbench.bench.training ...`` measures libgomp's default.
"""

from __future__ import annotations

import argparse
import os
import statistics
import time
from pathlib import Path

import numpy as np

from cnnbench.common.runtime import (
    MIXED_POOLS_ENVIRONMENT,
    keep_freed_memory,
    load_average,
    restart_with,
    set_threads,
)
from cnnbench.data import load_split
from cnnbench.network.architecture import SEED

TRAIN_FILES = ("train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz")
TWIN = "twin"
TWIN_STEP_BY_STEP = "twin, step by step"
TWIN_SPINNING = "twin, step by step, OpenBLAS spinning"


def measure(
    images: np.ndarray,
    labels: np.ndarray,
    batch_size: int,
    repeats: int,
    dtype,
    seed: int = 0,
    interleaved: bool = False,
) -> dict[str, list[float]]:
    """Seconds per epoch of each trainer, ``repeats`` times each, alternating; ``interleaved``:
    also of the twin run (see the module's docstring)."""
    from cnnbench.training import numpy_trainer as train_numpy
    from cnnbench.training import seeding as train

    data = train_numpy.prepare(images, labels, dtype)
    order = next(train.epoch_orders(len(images), 1, seed))
    indices = [order[start : start + batch_size] for start in range(0, len(order), batch_size)]
    batches = [(data.x[batch], data.labels[batch]) for batch in indices]
    initial = train.initial_weights(seed, SEED)

    def torch_trainer(release_blas: bool = True):
        return train_numpy.TorchTrainer(initial, SEED, 1e-3, dtype, release_blas)

    def numpy_trainer():
        return train_numpy.NumpyTrainer(initial, SEED, 1e-3, dtype)

    def alone(trainer):
        return lambda part: [trainer.step(x, y) for x, y in part]

    def twin(block: int | None = None, release_blas: bool = True):
        trainers = numpy_trainer(), torch_trainer(release_blas)
        return lambda part: list(train_numpy.twin_steps(*trainers, part, block))

    # each makes a fresh run: a function of the batches to take
    makers = {"torch": lambda: alone(torch_trainer()), "numpy": lambda: alone(numpy_trainer())}
    if interleaved:
        makers[TWIN] = twin
        makers[TWIN_STEP_BY_STEP] = lambda: twin(block=1)
        makers[TWIN_SPINNING] = lambda: twin(block=1, release_blas=False)
    for make in makers.values():  # warm up: first calls allocate, load kernels
        make()(batches[:2])
    seconds: dict[str, list[float]] = {name: [] for name in makers}
    for _ in range(repeats):
        for name, make in makers.items():
            run = make()
            started = time.perf_counter()
            run(batches)
            seconds[name].append(time.perf_counter() - started)
    return seconds


def loads(averages: list[float] | None) -> str:
    """1, 5 and 15 minute load averages, as one reads them."""
    return "unknown" if averages is None else " / ".join(f"{value:.1f}" for value in averages)


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
    parser.add_argument(
        "--interleaved",
        action="store_true",
        help="also time the twin run (NumPy's steps, then PyTorch's on the same batches)",
    )
    args = parser.parse_args(argv)

    set_threads(args.threads)
    keep_freed_memory()  # each step's arrays reuse the last step's memory
    images, labels = load_split(*(args.mnist_dir / name for name in TRAIN_FILES), SEED)
    if not 0 < args.images <= len(images):
        parser.error(f"--images must be in 1..{len(images)}")
    load_before = load_average()
    seconds = measure(
        images[: args.images],
        labels[: args.images],
        args.batch_size,
        args.repeats,
        args.dtype,
        interleaved=args.interleaved,
    )
    medians = {name: statistics.median(values) for name, values in seconds.items()}
    spin_count = os.environ.get("GOMP_SPINCOUNT", "unset (libgomp's default, 300000)")
    print(
        f"one epoch of {args.images} images, batch {args.batch_size}, {args.dtype}, "
        f"{args.threads} thread(s), {args.repeats} repeats; load average "
        f"{loads(load_before)} before, {loads(load_average())} after; "
        f"GOMP_SPINCOUNT {spin_count}"
    )
    steps = -(-args.images // args.batch_size)
    for name, values in seconds.items():
        runs = ", ".join(f"{value:.2f}" for value in values)
        print(
            f"  {name:37s} median {medians[name]:8.2f} s, {medians[name] / steps * 1e3:7.1f} ms "
            f"per step   (runs: {runs})"
        )
    print(f"  ratio NumPy / PyTorch: {medians['numpy'] / medians['torch']:.2f}")
    alone = medians["numpy"] + medians["torch"]
    for name in (TWIN, TWIN_STEP_BY_STEP, TWIN_SPINNING):
        if name in medians:
            print(f"  ratio {name} / (NumPy + PyTorch alone): {medians[name] / alone:.2f}")


if __name__ == "__main__":
    restart_with(MIXED_POOLS_ENVIRONMENT)
    main()
