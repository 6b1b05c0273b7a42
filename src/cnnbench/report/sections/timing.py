"""Section 3: per-image latency per backend (inference/<backend>.csv and .json), how far each
backend's median moved between fresh processes (bench_processes.json), and how it was measured
(environment.json, the timed rules' benchmark files).

Speeds are measured against the production peer (``backends.PEERS``): each backend's median as a
multiple of the peer's, with a 95 % bootstrap interval; torch stays the correctness reference and
keeps its own column. As MLPerf's single-stream scenario, the table shows p50 and p90 beside the
mean; as pyperf and torch.utils.benchmark warn, a backend is flagged unstable when its
interquartile range exceeds UNSTABLE of its median within the run, or its median moved more than
UNSTABLE between fresh processes."""

from __future__ import annotations

import statistics
from typing import Any

import pandas as pd

from cnnbench.backends import PEERS, REFERENCE

from .. import figures, fmt
from ..common import BOOTSTRAP_RESAMPLES, CONFIDENCE, PASS, WARN, badge, blas_lines, core_share
from ..inputs import Results, nested
from . import throughput

UNSTABLE = 0.10  # IQR / median within a run, or (max - min) / median of per-process medians


def section(results: Results, stats: dict[str, dict[str, Any]]) -> dict[str, Any]:
    present = results.present_backends
    reference = stats.get(REFERENCE)
    peer = results.peer.name if results.peer else None
    moved = variance(results)
    rows = []
    for backend in present:
        s, meta = stats[backend.name], backend.meta
        compile_s = meta.get("compile_s")
        between = moved["by_name"].get(backend.name) if moved else None
        rows.append(
            {
                "name": backend.name,
                "peer": backend.name in PEERS,
                "median": fmt.duration(s["median"]),
                "p90": fmt.duration(s["p90"]),
                "mean": fmt.duration(s["mean"]),
                "iqr": fmt.share(s["iqr_ratio"]),
                "speedup": speedup(backend.name, s, reference),
                "versus_peer": versus_peer(backend.name, s) if peer else "–",
                "stability": stability(s, between),
                "load": fmt.duration(meta.get("load_s")),
                "compile": fmt.duration(compile_s) if compile_s is not None else "none",
                "threads": meta.get("threads", "–"),
                "warmup": meta.get("warmup", "–"),
                "shards": meta.get("shards", "–"),
            }
        )
    return {
        "rows": rows,
        "peer": peer,
        "unstable_limit": fmt.share(UNSTABLE),
        "bootstrap": {
            "confidence": fmt.share(CONFIDENCE),
            "resamples": fmt.integer(BOOTSTRAP_RESAMPLES),
        },
        "variance": moved,
        "figure": _latency_figure(results),
        "throughput": throughput.section(results),
        "method": _method(results),
    }


def stability(own: dict[str, Any], between: dict[str, Any] | None) -> dict[str, Any]:
    """Stable, or unstable with the reasons: the IQR above UNSTABLE of the median within the run,
    the median moving more than UNSTABLE between fresh processes (batch 1 or the large batch)."""
    reasons = []
    if not own["iqr_ratio"] <= UNSTABLE:
        reasons.append(f"IQR {fmt.share(own['iqr_ratio'])} of its median")
    for key, what in (("latency", "batch-1"), ("batch", "large-batch")):
        measure = (between or {}).get(key)
        if measure and measure["spread_pct"] > 100 * UNSTABLE:
            reasons.append(f"{what} median moved {measure['spread']} between processes")
    return {
        "badge": badge(WARN, "unstable") if reasons else badge(PASS, "stable"),
        "reasons": reasons,
        "checked": "between processes too" if between else "within the run only",
    }


def speedup(name: str, own: dict[str, float], reference: dict[str, float] | None) -> str:
    """Median latency against the reference's, as text."""
    if name == REFERENCE:
        return "reference"
    return fmt.speedup(reference["median"], own["median"]) if reference else "–"


def versus_peer(name: str, own: dict[str, Any]) -> str:
    """Median latency as a multiple of the production peer's with its 95 % bootstrap interval
    ("1.37× [1.35–1.39]": 1.37 times its time); see common.latency_stats."""
    if name in PEERS:
        return "peer"
    return fmt.ratio_interval(*own["versus_peer"]) if "versus_peer" in own else "–"


def variance(results: Results) -> dict[str, Any] | None:
    """How far each backend's median moved between the fresh processes of bench_processes.json:
    per backend and measure (batch 1, the large batch) the min, median and max of the per-process
    medians, and the spread (max - min) / median in percent. None without that file."""
    bench = results.bench_processes
    runs = [r for r in bench.get("per_process") or [] if isinstance(r, dict)]
    if len(runs) < 2:
        return None
    names = [b.name for b in results.backends if all(b.name in r.get("latency", {}) for r in runs)]
    names += [n for n in runs[0].get("latency", {}) if n not in names]
    rows = []
    for name in names:
        row = {"name": name, "peer": name in PEERS}
        for key in ("latency", "batch"):
            values = [float(r[key][name]) for r in runs if name in r.get(key, {})]
            if len(values) < 2:
                row[key] = None
                continue
            low, middle, high = min(values), statistics.median(values), max(values)
            row[key] = {
                "min": fmt.duration(low),
                "median": fmt.duration(middle),
                "max": fmt.duration(high),
                "spread_pct": 100 * (high - low) / middle,
                "spread": f"{100 * (high - low) / middle:.0f} %",
                "unstable": (high - low) / middle > UNSTABLE,
            }
        rows.append(row)
    by_name = {row["name"]: row for row in rows}
    return {
        "processes": len(runs),
        "batch_size": bench.get("batch_size"),
        "clock": bench.get("clock", "wall"),
        "rows": rows,
        "by_name": by_name,
        "sentence": _variance_sentence(by_name, len(runs)),
    }


def _variance_sentence(rows: dict[str, dict[str, Any]], processes: int) -> str:
    """The headline: numba_loops (its median moved most between processes before it was fixed),
    else the backend whose batch-1 median moved most."""
    moved = [row for row in rows.values() if row["latency"]]
    if not moved:
        return ""
    focus = rows.get("numba_loops") if rows.get("numba_loops", {}).get("latency") else None
    focus = focus or max(moved, key=lambda row: row["latency"]["spread_pct"])
    latency = focus["latency"]
    return (
        f"Between {processes} fresh processes, the batch-1 median of {focus['name']} ranged "
        f"{latency['min']}–{latency['max']}: a spread of {latency['spread']} of its median "
        f"({latency['median']})."
    )


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
            if row["name"].startswith(("infer", "throughput", "bench", "machine", "layer"))
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
