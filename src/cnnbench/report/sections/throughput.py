"""Section 3, second part: images per second against batch size (throughput.csv), each backend's
time per image also as a multiple of the production peer's (``backends.PEERS``)."""

from __future__ import annotations

from typing import Any

from cnnbench.backends import PEERS, REFERENCE

from .. import figures, fmt
from ..inputs import Results


def section(results: Results) -> dict[str, Any] | None:
    table = results.throughput
    if table is None or table.empty:
        return None
    present = [b.name for b in results.backends if table["backend"].eq(b.name).any()]
    order = present + sorted(set(table["backend"]) - set(present))
    peer = next((name for name in order if name in PEERS), None)
    sizes = sorted(int(s) for s in table["batch_size"].unique())
    rows = []
    for name in order:
        cells = []
        for size in sizes:
            hit = table[(table["backend"] == name) & (table["batch_size"] == size)]
            ref = table[(table["backend"] == REFERENCE) & (table["batch_size"] == size)]
            peer_row = table[(table["backend"] == peer) & (table["batch_size"] == size)]
            if hit.empty:
                cells.append({"rate": "–", "speedup": "", "versus_peer": ""})
                continue
            rate = float(hit["images_per_s"].iloc[0])
            speed = ""
            if name != REFERENCE and not ref.empty:
                speed = fmt.speedup(1 / float(ref["images_per_s"].iloc[0]), 1 / rate)
            versus_peer = ""
            if name != peer and not peer_row.empty:
                versus_peer = fmt.ratio(float(peer_row["images_per_s"].iloc[0]) / rate)
            cells.append(
                {
                    "rate": fmt.rate(rate),
                    "speedup": speed,
                    "versus_peer": versus_peer,
                    "images": fmt.integer(hit["images"].iloc[0]) if "images" in hit else "–",
                    "repeats": int(hit["repeats"].iloc[0]) if "repeats" in hit else None,
                }
            )
        rows.append({"name": name, "peer": name in PEERS, "cells": cells})
    return {
        "peer": peer,
        "sizes": [fmt.integer(s) for s in sizes],
        "rows": rows,
        "figure": figures.throughput_curves(table, order),
    }
