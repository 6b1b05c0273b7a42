"""Per-image timed inference over a range of test images, and gathering the ranges' shards.

``run``: one ``predict`` call per image, the clock (``time.perf_counter``) around that call only,
after ``warmup`` untimed predictions on the range's first images. Writes one CSV row per image
(index, label, pred, latency_s, logit_0..logit_9, in index order) and a meta JSON.
``gather``: concatenates shards (each with its meta JSON beside it) into one table equal to an
unsharded run except for the latencies.
"""

from __future__ import annotations

import argparse
import itertools
import json
import statistics
import time
from collections.abc import Iterable
from pathlib import Path

import numpy as np
import pandas as pd

from cnnbench import backends
from cnnbench.data import load_split, to_model_input
from cnnbench.runtime import atomic_output, optional_int, progress, set_threads
from cnnbench.geometry import NUM_CLASSES

LOGIT_COLUMNS = [f"logit_{k}" for k in range(NUM_CLASSES)]
COLUMNS = ["index", "label", "pred", "latency_s", *LOGIT_COLUMNS]
# 9 significant digits reproduce every float32 exactly when read back
FLOAT_FORMAT = "%.9g"


def shard_ranges(total: int, shards: int) -> list[tuple[int, int]]:
    """``shards`` contiguous [start, stop) ranges covering [0, total), sizes differing by <= 1."""
    if total < 1 or shards < 1:
        raise ValueError(f"need total >= 1 and shards >= 1, got total={total}, shards={shards}")
    if shards > total:
        raise ValueError(f"{shards} shards for {total} images would leave some shards empty")
    bounds = [total * k // shards for k in range(shards + 1)]
    return list(itertools.pairwise(bounds))


def timed_predictions(
    backend: backends.Backend, indices: Iterable[int], images: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Logits and seconds of one ``predict`` call per image, the clock around the call only.

    ``indices`` runs over ``range(len(images))`` (wrapped in a progress bar, or not).
    """
    logits = np.empty((len(images), NUM_CLASSES), dtype=np.float32)
    latencies = np.empty(len(images))
    clock, predict = time.perf_counter, backend.predict  # no lookups inside the timed interval
    for i in indices:
        image = images[i : i + 1]
        before = clock()
        result = predict(image)
        latencies[i] = clock() - before
        logits[i] = result[0]
    return logits, latencies


def run(
    backend_name: str,
    weights: str | Path,
    images: np.ndarray,
    labels: np.ndarray,
    start: int,
    warmup: int,
    threads: int,
) -> tuple[pd.DataFrame, dict]:
    """Time ``backend_name`` on ``images`` (float32 (N, 1, 28, 28)), whose first index is ``start``.

    Returns the predictions table and the meta dict.
    """
    set_threads(threads)  # before loading, so torch and numba start with this many threads
    started = time.perf_counter()
    backend = backends.load(backend_name, weights)
    load_s = time.perf_counter() - started
    for i in range(min(warmup, len(images))):
        backend.predict(images[i : i + 1])
    logits, latencies = timed_predictions(
        backend, progress(range(len(images)), desc=backend_name, unit="image"), images
    )
    table = pd.DataFrame(
        {
            "index": np.arange(start, start + len(images)),
            "label": labels.astype(np.int64),
            "pred": logits.argmax(axis=1),
            "latency_s": latencies,
            **{column: logits[:, k] for k, column in enumerate(LOGIT_COLUMNS)},
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


def read_predictions(path: str | Path) -> pd.DataFrame:
    """A predictions CSV, logits as float32 (exactly the values written), columns checked."""
    table = pd.read_csv(path, dtype={column: np.float32 for column in LOGIT_COLUMNS})
    if list(table.columns) != COLUMNS:
        raise ValueError(f"{path}: columns {list(table.columns)}, expected {COLUMNS}")
    return table


def write_predictions(table: pd.DataFrame, path: str | Path) -> None:
    with atomic_output(path) as temporary:
        table.to_csv(temporary, index=False, float_format=FLOAT_FORMAT)


def write_meta(meta: dict, path: str | Path) -> None:
    with atomic_output(path) as temporary:
        temporary.write_text(json.dumps(meta, indent=2) + "\n")


def gather(shard_paths: list[Path]) -> tuple[pd.DataFrame, dict]:
    """Concatenate shard CSVs (each with its ``.json`` meta beside it) in index order.

    Shards must come from one backend and setting and cover one contiguous range without gaps or
    overlaps. The meta's load_s and compile_s are medians over shards (each shard loads once).
    """
    parts = []
    for path in shard_paths:
        meta_path = Path(path).with_suffix(".json")
        if not meta_path.is_file():
            raise ValueError(f"{path}: no meta file {meta_path} beside it")
        parts.append((read_predictions(path), json.loads(meta_path.read_text()), path))
    if not parts:
        raise ValueError("no shards to gather")
    parts.sort(key=lambda part: part[0]["index"].iloc[0])
    first = parts[0][1]
    for _, meta, path in parts:
        for key in ("backend", "warmup", "threads"):
            if meta[key] != first[key]:
                raise ValueError(
                    f"{path}: {key} is {meta[key]!r}, other shards have {first[key]!r}"
                )
    table = pd.concat([table for table, _, _ in parts], ignore_index=True)
    expected = np.arange(table["index"].iloc[0], table["index"].iloc[0] + len(table))
    if not np.array_equal(table["index"].to_numpy(), expected):
        raise ValueError("shards do not cover one contiguous range of images exactly once")
    load_times = [meta["load_s"] for _, meta, _ in parts]
    compile_times = [meta["compile_s"] for _, meta, _ in parts if meta["compile_s"] is not None]
    meta = {
        "backend": first["backend"],
        "images": len(table),
        "warmup": first["warmup"],
        "threads": first["threads"],
        "load_s": statistics.median(load_times),
        "compile_s": statistics.median(compile_times) if compile_times else None,
        "shards": len(parts),
        "ranges": [list(r) for _, meta, _ in parts for r in meta["ranges"]],
        "load_s_per_shard": load_times,
        "compile_s_per_shard": [meta["compile_s"] for _, meta, _ in parts],
    }
    return table, meta


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m cnnbench.inference", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    run_parser = commands.add_parser("run", help="time one backend on one shard of the test images")
    run_parser.add_argument("--backend", required=True, choices=backends.NAMES)
    run_parser.add_argument("--weights", required=True, type=Path)
    run_parser.add_argument("--test-images", required=True, type=Path)
    run_parser.add_argument("--test-labels", required=True, type=Path)
    run_parser.add_argument(
        "--limit", type=optional_int, default=None, help="first N test images (none = all)"
    )
    run_parser.add_argument("--shard", type=int, default=0, help="which piece, from 0")
    run_parser.add_argument(
        "--shards", type=int, default=1, help="pieces the images are split into"
    )
    run_parser.add_argument("--warmup", type=int, default=10)
    run_parser.add_argument("--threads", type=int, default=1)
    run_parser.add_argument("--out", required=True, type=Path)
    run_parser.add_argument("--meta", required=True, type=Path)
    gather_parser = commands.add_parser("gather", help="concatenate shards into one table")
    gather_parser.add_argument("--out", required=True, type=Path)
    gather_parser.add_argument("--meta", required=True, type=Path)
    gather_parser.add_argument("shards", nargs="+", type=Path)
    args = parser.parse_args(argv)

    if args.command == "run":
        images, labels = load_split(args.test_images, args.test_labels)
        total = len(images) if args.limit is None else args.limit
        if not 1 <= total <= len(images):
            parser.error(
                f"--limit must be between 1 and the {len(images)} test images, got {total}"
            )
        if args.shards < 1:
            parser.error(f"--shards must be >= 1, got {args.shards}")
        if not 0 <= args.shard < args.shards:
            parser.error(f"--shard must be in [0, {args.shards}), got {args.shard}")
        try:
            start, stop = shard_ranges(total, args.shards)[args.shard]
        except ValueError as error:
            parser.error(str(error))
        if args.warmup < 0:
            parser.error(f"--warmup must be >= 0, got {args.warmup}")
        table, meta = run(
            args.backend,
            args.weights,
            to_model_input(images[start:stop]),
            labels[start:stop],
            start,
            args.warmup,
            args.threads,
        )
    else:
        table, meta = gather(args.shards)
    write_predictions(table, args.out)
    write_meta(meta, args.meta)


if __name__ == "__main__":
    main()
