"""Section 4: do the backends predict the same class as PyTorch? (agreement.csv, disagreements.csv)"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from cnnbench.backends import PEERS
from cnnbench.common.tables import logit_columns_of

from .. import figures, fmt
from ..common import FAIL, MAX_GALLERY, NA, PASS, WARN, badge, pair, thumbnail
from ..inputs import Results
from . import mistakes

LOGIT_WARN = 1e-3  # float32 rounding across summation orders stays far below this


def section(results: Results) -> dict[str, Any]:
    status, text = verdict(results)
    return {
        "pairs": _pairs(results.agreement),
        "figure": _heatmaps(results),
        "badge": status,
        "verdict": text,
        **_disagreements(results),
        "mistakes": mistakes.section(results),
    }


def _pairs(table: pd.DataFrame | None) -> list[dict[str, Any]]:
    if table is None:
        return []
    return [
        {
            "a": row.backend_a,
            "b": row.backend_b,
            "images": fmt.integer(row.images),
            "agree": fmt.integer(row.agree),
            "fraction": fmt.percent(row.agree_fraction),
            "differ": fmt.integer(row.images - row.agree),
            "max_diff": fmt.scientific(row.max_abs_logit_diff),
            "badge": badge(
                PASS if row.agree == row.images else FAIL,
                "all agree" if row.agree == row.images else f"{row.images - row.agree:,} differ",
            ),
        }
        for row in table.itertuples(index=False)
    ]


def _heatmaps(results: Results) -> str | None:
    """Pairwise agreement counts and largest logit differences of the backends that ran."""
    table = results.agreement
    if table is None or not len(table):
        return None
    names = [
        b.name
        for b in results.present_backends
        if ((table.backend_a == b.name) | (table.backend_b == b.name)).any()
    ]
    if len(names) < 2:
        return None
    counts = pd.DataFrame(np.nan, index=names, columns=names)
    images, diffs = counts.copy(), counts.copy()
    for a in names:
        for b in names:
            if a == b:
                n = len(results.backend(a).table)
                counts.loc[a, b], images.loc[a, b], diffs.loc[a, b] = n, n, 0.0
            elif row := pair(table, a, b):
                counts.loc[a, b] = row["agree"]
                images.loc[a, b] = row["images"]
                diffs.loc[a, b] = row["max_abs_logit_diff"]
    return figures.agreement_heatmaps(counts, images, diffs)


def verdict(results: Results) -> tuple[dict[str, str], str]:
    """Every backend against the reference: (badge, one-sentence verdict)."""
    reference = results.reference.name if results.reference else None
    others = [b.name for b in results.present_backends if b.name != reference]
    failing, missing, large = [], [], []
    largest, images = 0.0, None
    for name in others:
        row = pair(results.agreement, reference, name)
        if row is None:
            missing.append(name)
            continue
        images = int(row["images"]) if images is None else min(images, int(row["images"]))
        diff = float(row["max_abs_logit_diff"])
        largest = max(largest, diff)
        if int(row["agree"]) != int(row["images"]):
            failing.append(
                f"{name} differs on {int(row['images'] - row['agree']):,} of "
                f"{int(row['images']):,} images"
            )
        if diff > LOGIT_WARN:
            large.append(f"{name} ({fmt.scientific(diff)})")
    if not reference:
        return badge(NA, "no results"), "No reference (PyTorch) results."
    if not others:
        return badge(NA, "one backend"), f"Only {reference} ran; there is nothing to compare."
    if results.agreement is None:
        return badge(NA, "not checked"), "agreement.csv is missing, so agreement was not checked."
    if failing:
        return badge(FAIL, "disagree"), (
            "Not every backend predicts the same class as PyTorch: " + "; ".join(failing) + "."
        )
    if missing:
        return badge(WARN, "incomplete"), (
            f"No agreement row for {', '.join(missing)} against PyTorch."
        )
    if large:
        return badge(WARN, "logits differ"), (
            f"Every backend predicts the same class as PyTorch on all {fmt.integer(images)} "
            f"images, but logits differ by more than {fmt.scientific(LOGIT_WARN)}: "
            f"{', '.join(large)}."
        )
    own = [name for name in others if name not in PEERS]
    peers = [name for name in others if name in PEERS]
    parts = []
    if own:
        several = len(own) > 1
        parts.append(
            f"all {len(own)} hand-written backends"
            if several
            else f"the hand-written backend {own[0]}"
        )
    if peers:
        parts.append(f"the production peer{'s' if len(peers) > 1 else ''} {', '.join(peers)}")
    who = " and ".join(parts)
    verb = "predicts" if len(own) + len(peers) == 1 else "predict"
    return badge(PASS, "identical predictions"), (
        f"{who[0].upper()}{who[1:]} {verb} the same class as PyTorch on all "
        f"{fmt.integer(images)} images; the largest |logit difference| is "
        f"{fmt.scientific(largest)}."
    )


def _disagreements(results: Results) -> dict[str, Any]:
    """Thumbnails of images where backends disagree, with every backend's logits and margin."""
    table = results.disagreements
    if table is None or not len(table):
        return {"disagreements": [], "disagreement_count": 0, "disagreement_hidden": 0}
    indices = sorted(int(i) for i in table["index"].unique())
    gallery = []
    for index in indices[:MAX_GALLERY]:
        rows = table[table["index"] == index]
        gallery.append(
            {
                "index": index,
                "label": int(rows["label"].iloc[0]),
                "thumbnail": thumbnail(results, index),
                "pairs": ", ".join(
                    sorted({f"{r.backend_a} vs {r.backend_b}" for r in rows.itertuples()})
                ),
                "backends": _logits(results, index, rows),
            }
        )
    return {
        "disagreements": gallery,
        "disagreement_count": len(indices),
        "disagreement_hidden": max(len(indices) - MAX_GALLERY, 0),
    }


def _logits(results: Results, index: int, rows: pd.DataFrame) -> list[dict[str, Any]]:
    """Each backend's prediction and logits on one image; margins from disagreements.csv."""
    margins = {}
    for row in rows.itertuples():
        margins.setdefault(row.backend_a, row.margin_a)
        margins.setdefault(row.backend_b, row.margin_b)
    out = []
    for backend in results.present_backends:
        hit = backend.table[backend.table["index"] == index]
        if hit.empty:
            continue
        logits = hit[logit_columns_of(hit)].to_numpy(dtype=float)[0]
        out.append(
            {
                "name": backend.name,
                "pred": int(hit["pred"].iloc[0]),
                "margin": fmt.scientific(margins.get(backend.name)),
                "logits": [
                    {"value": f"{v:.4f}", "top": k == int(np.argmax(logits))}
                    for k, v in enumerate(logits)
                ],
            }
        )
    return out
