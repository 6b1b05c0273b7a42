"""Section 5: the hand-written backward passes against their references (gradcheck.csv)."""

from __future__ import annotations

from typing import Any

from .. import fmt
from ..common import FAIL, NA, PASS, badge
from ..inputs import Results

REFERENCES = {
    # gradcheck.csv's ``reference`` column (what cnnbench's gradcheck step writes) -> its meaning
    "torch_float64": "PyTorch autograd in float64 on the same weights and images, compared with "
    "the NumPy gradient computed in float64: both are exact up to float64 rounding, so the "
    "tolerance is tight. A bug in any backward formula shows here.",
    "torch_float32": "PyTorch autograd in float32, compared with the NumPy gradient in float32: "
    "the precision the network really runs at; summation order makes them differ slightly. For a "
    "confident model, dLoss/dlogits = softmax − onehot is a near-cancellation, so every float32 "
    "gradient (PyTorch's too) is only good to about 1e-4 to 1e-3 of the tensor's scale: the "
    "tolerance is 1e-4 or three times PyTorch float32's own error against float64, whichever "
    "is larger.",
    "finite_differences": "Central finite differences (L(θ+h) − L(θ−h)) / 2h of the float64 loss "
    "at randomly sampled coordinates of each tensor: independent of PyTorch, it checks the "
    "calculus itself. Coordinates whose step would flip a ReLU are replaced, never silently "
    "accepted.",
}


def section(results: Results) -> dict[str, Any]:
    table = results.gradcheck
    if table is None or table.empty:
        return {
            "rows": [],
            "badge": badge(NA, "not run"),
            "verdict": "gradcheck.csv is missing.",
            "references": [],
        }
    rows = [
        {
            "tensor": row.get("tensor", ""),
            "implementation": row.get("implementation", ""),
            "reference": row.get("reference", ""),
            "dtype": row.get("dtype", ""),
            "max_abs_err": fmt.scientific(row.get("max_abs_err")),
            "max_rel_err": fmt.scientific(row.get("max_rel_err")),
            "tolerance": fmt.scientific(row.get("tolerance")),
            "badge": badge(PASS, "pass") if row.get("passed") else badge(FAIL, "fail"),
        }
        for row in table.to_dict("records")
    ]
    passed = int(table["passed"].sum()) if "passed" in table else 0
    failed = [
        f"{r['tensor']} ({r['implementation']} vs {r['reference']})"
        for r in rows
        if r["badge"]["status"] == FAIL
    ]
    if failed:
        status = badge(FAIL, f"{len(failed)} failed")
        verdict = f"{passed} of {len(rows)} gradient checks passed; failed: {', '.join(failed)}."
    else:
        status = badge(PASS, "all passed")
        verdict = f"All {len(rows)} gradient checks passed."
    references = [
        {"name": name, "meaning": REFERENCES.get(name, "Compared as written in gradcheck.csv.")}
        for name in dict.fromkeys(str(r) for r in table.get("reference", []))
    ]
    return {
        "rows": rows,
        "badge": status,
        "verdict": verdict,
        "passed": passed,
        "total": len(rows),
        "references": references,
        "matrix": _matrix(rows),
    }


def _matrix(rows: list[dict[str, Any]]) -> dict[str, Any] | None:
    """One row per tensor, one column per (reference, implementation): the compact view."""
    columns = list(dict.fromkeys((r["reference"], r["implementation"]) for r in rows))
    tensors = list(dict.fromkeys(r["tensor"] for r in rows))
    if len(columns) * len(tensors) < len(rows):  # repeated keys: the long table says it all
        return None
    cells = {(r["tensor"], r["reference"], r["implementation"]): r for r in rows}
    tolerance = {}
    for r in rows:
        tolerance.setdefault((r["reference"], r["implementation"]), r["tolerance"])
    return {
        "columns": [
            {"reference": ref, "implementation": impl, "tolerance": tolerance[ref, impl]}
            for ref, impl in columns
        ],
        "rows": [
            {
                "tensor": tensor,
                "cells": [
                    {
                        "value": cells[tensor, ref, impl]["max_rel_err"],
                        "status": cells[tensor, ref, impl]["badge"]["status"],
                    }
                    if (tensor, ref, impl) in cells
                    else {"value": "–", "status": "na"}
                    for ref, impl in columns
                ],
            }
            for tensor in tensors
        ],
    }
