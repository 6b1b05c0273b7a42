"""Section 6: the seed notebook's 4×4 example, computed live by ``cnnbench.ops`` (NumPy only).

The report never imports torch. PyTorch's result for the same example appears only when a pipeline
step has written it to ``results/worked_example_torch.json`` ({"output": nested list, "torch":
version, "function": ...}); otherwise the table shows the hand-derived expectation and says so.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from cnnbench import ops
from cnnbench.worked_example import EXPECTED, PADDING, STRIDE, example_inputs


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
