"""Section 3c: this machine's limits, measured (machine.json, written by cnnbench.bench.machine):
the single-thread float32 peaks and the triad bandwidth from the L1 cache to main memory, the
roofs each backend's layers are held to."""

from __future__ import annotations

from typing import Any

from .. import figures, fmt
from ..inputs import Results

PEAKS = (  # machine.json key, what was measured, how
    (
        "matmul",
        "matrix multiply through NumPy's BLAS",
        lambda m: f"{m['size']}×{m['size']} float32, fastest call",
    ),
    (
        "onnxruntime_matmul",
        "matrix multiply through ONNX Runtime",
        lambda m: f"{m['size']}×{m['size']} float32, fastest call",
    ),
    (
        "numba_dot",
        "dot product compiled by numba",
        lambda m: f"{m['width']} float32 elements in the L1 cache, fastest call",
    ),
)


def section(results: Results) -> dict[str, Any] | None:
    """None without machine.json (or one without roofs)."""
    machine = results.machine
    roofs = machine.get("roofs") or {}
    bandwidth = machine.get("bandwidth") or []
    if not roofs or not bandwidth or not machine.get("peak_gflops"):
        return None
    peak = float(machine["peak_gflops"])
    sizes = {f"L{cache['level']}": cache["bytes"] for cache in machine.get("caches") or []}
    environment = machine.get("environment") or {}
    load = machine.get("load_average") or []
    return {
        "peaks": [
            {
                "name": name,
                "detail": detail(machine[key]),
                "rate": gflops(machine[key]["gflops"]),
            }
            for key, name, detail in PEAKS
            if machine.get(key)
        ],
        "roofs": [
            {
                "level": level,
                "size": fmt.kibibytes(sizes.get(level)) if level in sizes else "beyond the caches",
                "bandwidth": f"{fmt.sig(value, 3)} GB/s",
                "ridge": f"{fmt.sig(peak / value, 3)} FLOP/byte",
            }
            for level, value in roofs.items()
        ],
        "figure": figures.bandwidth_curve(bandwidth, sizes),
        "cpu": environment.get("cpu_model", "–"),
        "load": " → ".join(f"{float(before[0]):.2f}" for before in load) if load else "–",
    }


def gflops(value) -> str:
    return f"{fmt.sig(float(value), 3)} GFLOP/s"
