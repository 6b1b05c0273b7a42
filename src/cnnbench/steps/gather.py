"""Gather the shards of one backend's inference into one table and one meta JSON.

The table equals an unsharded run except for the latencies. Job: input csv (the shards' CSVs, each
with its meta JSON beside it), meta (those JSONs: declared so they are inputs); output csv, meta.
"""

from __future__ import annotations

import json
import statistics
from pathlib import Path

import numpy as np
import pandas as pd

from cnnbench.common.errors import UserError
from cnnbench.common.files import write_json
from cnnbench.common.job import Job, run_job
from cnnbench.common.tables import read_predictions, write_predictions


def gather(shard_paths: list[Path]) -> tuple[pd.DataFrame, dict]:
    """Concatenate shard CSVs (each with its ``.json`` meta beside it) in index order.

    Shards must come from one backend and setting and cover one contiguous range without gaps or
    overlaps. The meta's load_s and compile_s are medians over shards (each shard loads once).
    """
    parts = []
    for path in shard_paths:
        meta_path = Path(path).with_suffix(".json")
        if not meta_path.is_file():
            raise UserError(f"{path}: no meta file {meta_path} beside it")
        parts.append((read_predictions(path), json.loads(meta_path.read_text()), path))
    if not parts:
        raise UserError("no shards to gather")
    parts.sort(key=lambda part: part[0]["index"].iloc[0])
    first = parts[0][1]
    for _, meta, path in parts:
        for key in ("backend", "warmup", "threads"):
            if meta[key] != first[key]:
                raise UserError(f"{path}: {key} is {meta[key]!r}, other shards have {first[key]!r}")
    table = pd.concat([table for table, _, _ in parts], ignore_index=True)
    expected = np.arange(table["index"].iloc[0], table["index"].iloc[0] + len(table))
    if not np.array_equal(table["index"].to_numpy(), expected):
        raise UserError("shards do not cover one contiguous range of images exactly once")
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


def run(job: Job) -> None:
    table, meta = gather(job.paths("input", "csv"))
    write_predictions(table, job.path("output", "csv"))
    write_json(meta, job.path("output", "meta"))


if __name__ == "__main__":
    run_job(run)
