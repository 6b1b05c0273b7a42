"""Batched throughput: images per second of each backend at each batch size.

For every (backend, batch size): one untimed warm-up batch, then ``repeats`` timed passes over the
same images in batches of that size; ``seconds`` is the median pass. The slow backends
(``cnnbench.backends.SLOW``) cost a good part of a second per image whatever the batch, so they run
on at most ``throughput_loop_images`` images, and a batch size above that is measured as one batch
of all of them.

Job: input weights, manifest (the weights must have its sha256), test_images, test_labels; output
csv; settings: the config's ``inference`` section (backends, threads, throughput_batch_sizes,
throughput_loop_images, throughput_repeats).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from cnnbench import backends
from cnnbench.common.files import write_table
from cnnbench.common.job import Job, run_job
from cnnbench.common.runtime import set_threads
from cnnbench.common.timing import median_seconds
from cnnbench.data import to_model_input
from cnnbench.network.architecture import Architecture
from cnnbench.steps import verified_test_split

COLUMNS = ["backend", "batch_size", "images", "seconds", "images_per_s", "repeats"]


def time_batches(backend: backends.Backend, x: np.ndarray, batch_size: int, repeats: int) -> float:
    """Median over ``repeats`` of the seconds to predict all of ``x`` in batches of ``batch_size``."""
    backend.predict(x[:batch_size])  # warm-up: buffers for this batch size, caches

    def one_pass() -> None:
        for start in range(0, len(x), batch_size):
            backend.predict(x[start : start + batch_size])

    return median_seconds(one_pass, repeats)


def measure(
    names: list[str],
    weights: str | Path,
    architecture: Architecture,
    x: np.ndarray,
    batch_sizes: list[int],
    loop_images: int,
    repeats: int,
) -> pd.DataFrame:
    rows = []
    for name in names:
        backend = backends.load(name, weights, architecture)
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


def run(job: Job) -> None:
    settings = job.settings
    set_threads(settings["threads"])
    architecture, images, _ = verified_test_split(job)
    table = measure(
        settings["backends"],
        job.path("input", "weights"),
        architecture,
        to_model_input(images),
        settings["throughput_batch_sizes"],
        settings["throughput_loop_images"],
        settings["throughput_repeats"],
    )
    write_table(table, job.path("output", "csv"))


if __name__ == "__main__":
    run_job(run)
