"""Section 6: the seed notebook's 4×4 example, computed live by ``cnnbench.ops`` (NumPy only).

The report never imports torch. PyTorch's result for the same example appears only when a pipeline
step has written it to the report's ``worked_example`` input (``results/worked_example_torch.json``:
{"output": nested list, "torch": version, "function": ...}); otherwise the table shows the
hand-derived expectation and says so.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from cnnbench import ops
from cnnbench.ops.worked_example import EXPECTED, PADDING, STRIDE, example_inputs

from ..common import FAIL, PASS, badge


def section(torch_result: dict[str, Any] | None) -> dict[str, Any]:
    """The template's view of ``compute``: every array as a grid of text, a badge per column."""
    data = compute(torch_result)
    columns = []
    for entry in data["columns"]:
        output = entry.get("output")
        channels = (
            [_grid(output[0, c]) for c in range(output.shape[1])]
            if (output is not None and output.ndim == 4 and not entry.get("error"))
            else []
        )
        columns.append(
            {
                "name": entry["name"],
                "call": entry["call"],
                "channels": channels,
                "error": entry.get("error"),
                "badge": badge(PASS, "matches")
                if entry["matches"]
                else badge(FAIL, "differs" if channels else "missing"),
            }
        )
    x, w, b = data["x"], data["w"], data["b"]
    return {
        "inputs": [_grid(x[0, c]) for c in range(x.shape[1])],
        "kernels": [[_grid(w[o, c]) for c in range(w.shape[1])] for o in range(w.shape[0])],
        "bias": [f"{v:g}" for v in b],
        "stride": data["stride"],
        "padding": data["padding"],
        "columns": columns,
        "has_torch": data["has_torch"],
        "badge": badge(PASS, "all match") if data["passed"] else badge(FAIL, "mismatch"),
    }


def _grid(array: np.ndarray) -> list[list[str]]:
    return [[f"{v:g}" for v in row] for row in array]


def compute(torch_result: dict[str, Any] | None = None) -> dict[str, Any]:
    """Run loops and im2col on the example; compare with the expectation (and torch's, if given)."""
    x, w, b = example_inputs()
    columns: list[dict[str, Any]] = []
    for name in ("conv2d_loops", "conv2d_im2col"):
        entry = {
            "name": name.removeprefix("conv2d_"),
            "call": f"cnnbench.ops.{name}(x, w, b, stride={STRIDE}, padding={PADDING})",
        }
        try:
            output = getattr(ops, name)(x, w, b, stride=STRIDE, padding=PADDING)
            entry["output"] = np.asarray(output, dtype=np.float64)
        except Exception as error:  # the report shows the failure instead of dying
            entry["error"] = f"{type(error).__name__}: {error}"
        columns.append(entry)

    if torch_result and "output" in torch_result:
        torch_entry = {
            "name": "PyTorch",
            "call": torch_result.get("function", "torch.nn.functional.conv2d")
            + (f" (torch {torch_result['torch']})" if torch_result.get("torch") else ""),
        }
        try:
            torch_entry["output"] = np.asarray(torch_result["output"], dtype=np.float64)
        except (TypeError, ValueError) as error:
            torch_entry["error"] = f"unreadable output ({error})"
        columns.append(torch_entry)
    columns.append({"name": "expected (by hand)", "call": "window sums + bias", "output": EXPECTED})

    for entry in columns:
        output = entry.get("output")
        if output is not None:
            entry["matches"] = output.shape == EXPECTED.shape and bool(
                np.allclose(output, EXPECTED)
            )
            if output.shape != EXPECTED.shape:
                entry["error"] = f"shape {output.shape}, expected {EXPECTED.shape}"
        else:
            entry["matches"] = False
    return {
        "x": x,
        "w": w,
        "b": b,
        "stride": STRIDE,
        "padding": PADDING,
        "columns": columns,
        "passed": all(entry["matches"] for entry in columns),
        "has_torch": any(entry["name"] == "PyTorch" for entry in columns),
    }
