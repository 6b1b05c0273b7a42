"""Section 3: per-image latency per backend (inference/<backend>.csv and .json), and how it was
measured (environment.json, the timed rules' benchmark files)."""

from __future__ import annotations

from typing import Any

import pandas as pd

from cnnbench.backends import REFERENCE

from .. import figures, fmt
from ..common import blas_lines, core_share
from ..inputs import Results, nested
from . import throughput


def section(results: Results, stats: dict[str, dict[str, float]]) -> dict[str, Any]:
    present = results.present_backends
    reference = stats.get(REFERENCE)
    rows = []
    for backend in present:
        s, meta = stats[backend.name], backend.meta
        compile_s = meta.get("compile_s")
        rows.append(
            {
                "name": backend.name,
                "images": fmt.integer(s["images"]),
                "median": fmt.duration(s["median"]),
                "p95": fmt.duration(s["p95"]),
                "p99": fmt.duration(s["p99"]),
                "mean": fmt.duration(s["mean"]),
                "total": fmt.duration(s["total"]),
                "speedup": speedup(backend.name, s, reference),
                "load": fmt.duration(meta.get("load_s")),
                "compile": fmt.duration(compile_s) if compile_s is not None else "none",
                "threads": meta.get("threads", "–"),
                "warmup": meta.get("warmup", "–"),
                "shards": meta.get("shards", "–"),
            }
        )
    return {
        "rows": rows,
        "figure": _latency_figure(results),
        "throughput": throughput.section(results),
        "method": _method(results),
    }


def speedup(name: str, own: dict[str, float], reference: dict[str, float] | None) -> str:
    """Median latency against the reference's, as text."""
    if name == REFERENCE:
        return "reference"
    return fmt.speedup(reference["median"], own["median"]) if reference else "–"


def _latency_figure(results: Results) -> str | None:
    present = results.present_backends
    if not present:
        return None
    latencies = pd.concat(
        [
            pd.DataFrame({"backend": b.name, "latency_s": b.table["latency_s"].astype(float)})
            for b in present
        ],
        ignore_index=True,
    )
    latencies = latencies[latencies["latency_s"] > 0]
    if not len(latencies):
        return None
    return figures.latency_distributions(latencies, [b.name for b in present])


def _method(results: Results) -> dict[str, Any]:
    env = results.environment
    inference = nested(results.config, "inference", default={}) or {}
    metas = [b.meta for b in results.present_backends if b.meta]
    load = env.get("load_average")
    if isinstance(load, list | tuple):
        load_text = " / ".join(f"{float(v):.2f}" for v in load) + " (1 / 5 / 15 min)"
    else:
        load_text = str(load) if load is not None else "–"
    timed = []
    if results.benchmarks is not None:
        timed = [
            {
                "name": row["name"],
                "s": fmt.duration(row.get("s")),
                "mean_load": core_share(row.get("mean_load")),
            }
            for row in results.benchmarks.to_dict("records")
            if row["name"].startswith(("infer", "throughput"))
        ]
    return {
        "threads": ", ".join(_values(metas, inference, "threads")) or "–",
        "warmup": ", ".join(_values(metas, inference, "warmup")) or "–",
        "cpu": env.get("cpu_model") or "–",
        "cores": env.get("logical_cores", "–"),
        "blas": blas_lines(env.get("blas")),
        "load": load_text,
        "timed_rules": timed,
        "batch_sizes": ", ".join(str(s) for s in inference.get("throughput_batch_sizes", []) or []),
    }


def _values(metas: list[dict[str, Any]], inference: dict[str, Any], key: str) -> list[str]:
    """The distinct values the backends' meta files record for ``key``, else the config's."""
    recorded = sorted({str(m.get(key)) for m in metas if m.get(key) is not None})
    return recorded or ([str(inference[key])] if key in inference else [])
