"""Per-image timed inference of one backend over one shard of the test images.

One ``predict`` call per image, the clock (``time.perf_counter``) around that call only, after
``warmup`` untimed predictions on the range's first images. Writes one CSV row per image (index,
label, pred, latency_s, logit_0..logit_9, in index order) and a meta JSON.

Job: input weights, manifest (the weights must have its sha256), test_images, test_labels; output
csv, meta; settings: the config's ``inference`` section plus backend, shard and shards (which piece
of how many).
"""

from __future__ import annotations

import itertools
import time
from pathlib import Path

import numpy as np
import pandas as pd

from cnnbench import backends
from cnnbench.common.errors import UserError
from cnnbench.common.files import write_json
from cnnbench.common.job import Job, run_job
from cnnbench.common.runtime import progress, set_threads
from cnnbench.common.tables import logit_columns, write_predictions
from cnnbench.common.timing import timed_predictions
from cnnbench.data import to_model_input
from cnnbench.network.architecture import Architecture
from cnnbench.steps import verified_test_split


def shard_ranges(total: int, shards: int) -> list[tuple[int, int]]:
    """``shards`` contiguous [start, stop) ranges covering [0, total), sizes differing by <= 1."""
    if total < 1 or shards < 1:
        raise ValueError(f"need total >= 1 and shards >= 1, got total={total}, shards={shards}")
    if shards > total:
        raise ValueError(f"{shards} shards for {total} images would leave some shards empty")
    bounds = [total * k // shards for k in range(shards + 1)]
    return list(itertools.pairwise(bounds))


def infer(
    backend_name: str,
    weights: str | Path,
    architecture: Architecture,
    images: np.ndarray,
    labels: np.ndarray,
    start: int,
    warmup: int,
    threads: int,
) -> tuple[pd.DataFrame, dict]:
    """Time ``backend_name`` on ``images`` (float32 (N, C, H, W)), whose first index is ``start``.

    Returns the predictions table and the meta dict.
    """
    set_threads(threads)  # before loading, so torch and numba start with this many threads
    started = time.perf_counter()
    backend = backends.load(backend_name, weights, architecture)
    load_s = time.perf_counter() - started
    for i in range(min(warmup, len(images))):
        backend.predict(images[i : i + 1])
    logits, latencies = timed_predictions(
        backend.predict, progress(range(len(images)), desc=backend_name, unit="image"), images
    )
    table = pd.DataFrame(
        {
            "index": np.arange(start, start + len(images)),
            "label": labels.astype(np.int64),
            "pred": logits.argmax(axis=1),
            "latency_s": latencies,
            **{column: logits[:, k] for k, column in enumerate(logit_columns(logits.shape[1]))},
        }
    )
    meta = {
        "backend": backend_name,
        "images": len(images),
        "warmup": warmup,
        "threads": threads,
        "load_s": load_s,
        "compile_s": backend.compile_s,
        "shards": 1,
        "ranges": [[start, start + len(images)]],
    }
    return table, meta


def run(job: Job) -> None:
    settings = job.settings
    architecture, images, labels = verified_test_split(job)
    total = len(images) if settings["limit"] is None else settings["limit"]
    if total > len(images):
        raise UserError(f"inference.limit {total} exceeds the {len(images)} test images")
    try:
        start, stop = shard_ranges(total, settings["shards"])[settings["shard"]]
    except ValueError as error:
        raise UserError(f"inference.shards: {error}") from error
    table, meta = infer(
        settings["backend"],
        job.path("input", "weights"),
        architecture,
        to_model_input(images[start:stop]),
        labels[start:stop],
        start,
        settings["warmup"],
        settings["threads"],
    )
    write_predictions(table, job.path("output", "csv"))
    write_json(meta, job.path("output", "meta"))


if __name__ == "__main__":
    run_job(run)
