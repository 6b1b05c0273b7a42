"""The network the weights belong to (the manifest's architecture), layer by layer, as torchinfo's
summary shows it: output shape, parameters, multiply-adds."""

from __future__ import annotations

from typing import Any

from cnnbench.network.architecture import ArchitectureError, from_dict

from .. import fmt
from ..inputs import Results


def section(results: Results) -> dict[str, Any] | None:
    record = results.manifest.get("architecture")
    if not record:
        return None
    try:
        architecture = from_dict(record)
    except ArchitectureError as error:
        results.notes.append(f"manifest.json: the architecture cannot be read ({error})")
        return None
    total = architecture.macs
    rows = [
        {
            "layer": row["layer"],
            "kind": _describe(layer),
            "output_shape": " × ".join(map(str, row["output_shape"])),
            "parameters": fmt.integer(row["parameters"]),
            "macs": fmt.integer(row["macs"]),
            "share": fmt.percent(row["macs"] / total, 1) if total else "–",
        }
        for row, layer in zip(architecture.summary_rows(), architecture.layers, strict=True)
    ]
    return {
        "input_shape": " × ".join(map(str, architecture.input_shape)),
        "rows": rows,
        "parameters": fmt.integer(architecture.parameter_count),
        "macs": fmt.integer(total),
        "flops": fmt.integer(2 * total),
    }


def _describe(layer) -> str:
    """conv 3×3 /2 pad 1 + ReLU; max pool 2×2 /2; linear + ReLU."""
    if layer.kernel is None:
        text = "linear"
    else:
        name = {"conv": "conv", "maxpool": "max pool", "avgpool": "avg pool"}[layer.kind]
        text = f"{name} {layer.kernel[0]}×{layer.kernel[1]} /{layer.stride}"
        if layer.padding:
            text += f" pad {layer.padding}"
    return text + (" + ReLU" if layer.relu else "")
