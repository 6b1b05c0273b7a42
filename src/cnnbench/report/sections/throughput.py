"""Section 3, second part: images per second against batch size (throughput.csv)."""

from __future__ import annotations

from typing import Any

from cnnbench.backends import REFERENCE

from .. import figures, fmt
from ..inputs import Results


def section(results: Results) -> dict[str, Any] | None:
    table = results.throughput
    if table is None or table.empty:
        return None
    present = [b.name for b in results.backends if table["backend"].eq(b.name).any()]
    order = present + sorted(set(table["backend"]) - set(present))
    sizes = sorted(int(s) for s in table["batch_size"].unique())
    rows = []
    for name in order:
        cells = []
        for size in sizes:
            hit = table[(table["backend"] == name) & (table["batch_size"] == size)]
            ref = table[(table["backend"] == REFERENCE) & (table["batch_size"] == size)]
            if hit.empty:
                cells.append({"rate": "–", "speedup": ""})
                continue
            rate = float(hit["images_per_s"].iloc[0])
            speed = ""
            if name != REFERENCE and not ref.empty:
                speed = fmt.speedup(1 / float(ref["images_per_s"].iloc[0]), 1 / rate)
            cells.append(
                {
                    "rate": fmt.rate(rate),
                    "speedup": speed,
                    "images": fmt.integer(hit["images"].iloc[0]) if "images" in hit else "–",
                    "repeats": int(hit["repeats"].iloc[0]) if "repeats" in hit else None,
                }
            )
        rows.append({"name": name, "cells": cells})
    return {
        "sizes": [fmt.integer(s) for s in sizes],
        "rows": rows,
        "figure": figures.throughput_curves(table, order),
    }
