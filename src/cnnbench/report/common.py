"""Helpers every report section shares: badges, agreement rows, thumbnails, latency statistics."""

from __future__ import annotations

import math
from typing import Any

import jinja2
import numpy as np
import pandas as pd

from . import figures, fmt
from .inputs import Results

MAX_GALLERY = 12  # thumbnails per gallery; the rest are counted, never silently dropped

PASS, FAIL, WARN, NA = "pass", "fail", "warn", "na"


def template(name: str) -> jinja2.Template:
    """A page template of cnnbench/templates: autoescaped, strict about undefined names."""
    environment = jinja2.Environment(
        loader=jinja2.PackageLoader("cnnbench", "templates"),
        autoescape=True,
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    return environment.get_template(name)


def badge(status: str, text: str) -> dict[str, str]:
    return {"status": status, "text": text}


def images_phrase(results: Results, count: int) -> str:
    total = len(results.test_images) if results.test_images is not None else None
    if total and count < total:
        return f"the first {fmt.integer(count)} of {fmt.integer(total)} test images"
    return f"{fmt.integer(count)} test images"


def pair(agreement: pd.DataFrame | None, a: str | None, b: str) -> dict[str, Any] | None:
    """agreement.csv's row for backends ``a`` and ``b`` (either order), or None."""
    if agreement is None or a is None or a == b:
        return None
    rows = agreement[
        ((agreement.backend_a == a) & (agreement.backend_b == b))
        | ((agreement.backend_a == b) & (agreement.backend_b == a))
    ]
    return rows.iloc[0].to_dict() if len(rows) else None


def thumbnail(results: Results, index: int) -> str | None:
    images = results.test_images
    if images is None or not 0 <= index < len(images):
        return None
    return figures.image_uri(images[index])


BOOTSTRAP_RESAMPLES = 2000
BOOTSTRAP_SEEDS = (0, 1)  # the peer's resamples, a backend's: intervals depend on latencies only
CONFIDENCE = 0.95


def latency_stats(results: Results) -> dict[str, dict[str, Any]]:
    """Per present backend: images, median (p50), p90, mean, min, max, total latency (s),
    the interquartile range as a share of the median, and (when the production peer ran) the
    median as a multiple of the peer's with its 95 % bootstrap interval, ``versus_peer``:
    (ratio, low, high)."""
    stats: dict[str, dict[str, Any]] = {}
    for backend in results.present_backends:
        latency = backend.table["latency_s"].to_numpy(dtype=float)
        p25, p50, p75, p90 = np.percentile(latency, [25, 50, 75, 90])
        stats[backend.name] = {
            "images": len(latency),
            "median": float(p50),
            "p90": float(p90),
            "mean": float(latency.mean()),
            "min": float(latency.min()),
            "max": float(latency.max()),
            "total": float(latency.sum()),
            "iqr_ratio": float((p75 - p25) / p50) if p50 > 0 else math.nan,
        }
    peer = results.peer
    if peer is not None:
        peer_latency = peer.table["latency_s"].to_numpy(dtype=float)
        for backend in results.present_backends:
            if backend.name != peer.name:
                latency = backend.table["latency_s"].to_numpy(dtype=float)
                stats[backend.name]["versus_peer"] = median_ratio(latency, peer_latency)
    return stats


def median_ratio(own: np.ndarray, peer: np.ndarray) -> tuple[float, float, float]:
    """median(own) / median(peer) and its CONFIDENCE percentile bootstrap interval: both samples
    resampled independently, seeded, so the interval depends on the latencies alone."""
    ratios = bootstrap_medians(own, BOOTSTRAP_SEEDS[1]) / bootstrap_medians(
        peer, BOOTSTRAP_SEEDS[0]
    )
    tail = 100 * (1 - CONFIDENCE) / 2
    low, high = np.percentile(ratios, [tail, 100 - tail])
    return float(np.median(own) / np.median(peer)), float(low), float(high)


def bootstrap_medians(values: np.ndarray, seed: int, resamples: int = BOOTSTRAP_RESAMPLES):
    """Medians of ``resamples`` seeded resamples (with replacement) of ``values``."""
    rng = np.random.default_rng(seed)
    medians = np.empty(resamples)
    chunk = max(1, 2_000_000 // max(len(values), 1))  # bounded memory for 10,000 latencies
    for start in range(0, resamples, chunk):
        stop = min(start + chunk, resamples)
        picks = rng.integers(0, len(values), size=(stop - start, len(values)))
        medians[start:stop] = np.median(values[picks], axis=1)
    return medians


def core_share(mean_load) -> str:
    """A benchmark file's mean_load (percent of one core) as text."""
    try:
        return f"{float(mean_load):.0f} % of a core" if math.isfinite(float(mean_load)) else "–"
    except (TypeError, ValueError):
        return "–"


def blas_lines(blas) -> list[str]:
    """threadpoolctl's info (list of dicts) or plain strings -> one readable line per library."""
    if not blas:
        return []
    return [_blas_line(item) if isinstance(item, dict) else str(item) for item in _as_list(blas)]


def _as_list(value) -> list:
    return [value] if isinstance(value, dict) else list(value)


def _blas_line(item: dict[str, Any]) -> str:
    name = item.get("internal_api") or item.get("name") or item.get("user_api") or "library"
    details = []
    if item.get("threading_layer"):
        details.append(f"{item['threading_layer']} threading")
    if item.get("num_threads") is not None:
        details.append(f"{item['num_threads']} threads")
    if item.get("architecture"):
        details.append(str(item["architecture"]))
    line = " ".join(p for p in (str(name), str(item.get("version") or "")) if p)
    if details:
        line += f" ({', '.join(details)})"
    if item.get("prefix") and item.get("prefix") != name:
        line += f" — {item['prefix']}"
    return line
