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


def latency_stats(results: Results) -> dict[str, dict[str, float]]:
    """Per present backend: images, median, p95, p99, mean, min, max and total latency (s)."""
    stats = {}
    for backend in results.present_backends:
        latency = backend.table["latency_s"].to_numpy(dtype=float)
        p50, p95, p99 = np.percentile(latency, [50, 95, 99])
        stats[backend.name] = {
            "images": len(latency),
            "median": float(p50),
            "p95": float(p95),
            "p99": float(p99),
            "mean": float(latency.mean()),
            "min": float(latency.min()),
            "max": float(latency.max()),
            "total": float(latency.sum()),
        }
    return stats


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
