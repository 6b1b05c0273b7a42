"""The template's context: each section builds its own part from the results; nothing is shared."""

from __future__ import annotations

from typing import Any

from cnnbench.backends import REFERENCE

from .common import latency_stats
from .inputs import Results
from .sections import (
    agreement,
    dataset,
    gradcheck,
    limits,
    network,
    provenance,
    summary,
    timing,
    training,
    training_numpy,
    where,
    worked_example,
)


def build_context(results: Results, generated_at: str) -> dict[str, Any]:
    stats = latency_stats(results)
    parts = {
        "dataset": dataset.section(results),
        "network": network.section(results),
        "weights": dataset.weights(results),
        "agreement": agreement.section(results),
        "gradcheck": gradcheck.section(results),
        "training": training.section(results),
        "training_numpy": training_numpy.section(results),
        "timing": timing.section(results, stats),
        "limits": limits.section(results),
        "where": where.section(results),
        "worked": worked_example.section(results.worked_example_torch),
        "pipeline": provenance.pipeline_time(results),
        "provenance": provenance.section(results),
    }
    parts["summary"] = summary.section(
        results,
        stats,
        agreement=parts["agreement"],
        gradcheck=parts["gradcheck"],
        worked=parts["worked"],
        dataset=parts["dataset"],
    )
    return {
        "generated_at": generated_at,
        "notes": list(dict.fromkeys([*results.notes, *parts["summary"]["notes"]])),
        "reference": REFERENCE if results.reference else None,
        **parts,
    }
