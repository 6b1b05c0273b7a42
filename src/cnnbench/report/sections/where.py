"""Where the time goes (layers.csv, machine.json, the manifest's architecture): each backend's time
per layer, every layer's work and the bytes it must move, and how far each backend is from what
this machine can do (a roofline).

Per layer, from the architecture (float32): FLOPs = 2 x the multiply-adds it must do (taps on
a convolution's zero padding left out: an engine may skip them); bytes that must move per
image at batch B = weights / B + input + output; arithmetic intensity = FLOPs / bytes. The roof
that applies: the machine's float32 peak, or the bandwidth of the cache level the working set
(weights + B x (input + output)) fits in times the intensity, whichever is lower; a layer is
memory-bound when the bandwidth roof is the lower. A point above the roofs (the peak, and the L1
bandwidth times the intensity: no data moves faster) is a measurement or counting error: it is
listed as such. Pooling layers do no multiply-adds: they are held to bandwidth alone.
"""

from __future__ import annotations

from math import prod
from typing import Any

import numpy as np
import pandas as pd

from cnnbench.backends import PEERS, REFERENCE
from cnnbench.network.architecture import CONV, ArchitectureError, from_dict

from .. import figures, fmt
from ..inputs import Results

BYTES = 4  # float32
INTERPRETED = 0.01  # below 1 % of the roofs: the interpreter's (or per-call) overhead dominates


def useful_macs(layer) -> int:
    """Multiply-adds a layer must do per image: the architecture's count less a convolution's
    taps on zero padding, which an engine may skip (ONNX Runtime does: counting them would put
    its convolutions above the peak)."""
    if layer.kind != CONV:
        return layer.macs
    taps = 1
    for size, out, kernel in zip(
        layer.in_shape[1:], layer.out_shape[1:], layer.kernel, strict=True
    ):
        starts = np.arange(out) * layer.stride - layer.padding
        rows = starts[:, None] + np.arange(kernel)[None, :]
        taps *= int(((rows >= 0) & (rows < size)).sum())
    return layer.out_shape[0] * layer.in_shape[0] * taps


def layer_work(architecture, batch_size: int, caches: dict[str, int]) -> list[dict[str, Any]]:
    """Per layer: FLOPs, bytes by kind, bytes per image, intensity and the cache level (or
    "memory") its working set fits, at ``batch_size``."""
    rows = []
    for layer in architecture.layers:
        weights = BYTES * layer.parameter_count
        moved_in, moved_out = BYTES * prod(layer.in_shape), BYTES * prod(layer.out_shape)
        per_image = weights / batch_size + moved_in + moved_out
        working_set = weights + batch_size * (moved_in + moved_out)
        level = next((name for name, size in caches.items() if working_set <= size), "memory")
        rows.append(
            {
                "layer": layer.name,
                "kind": layer.kind,
                "flops": 2 * useful_macs(layer),
                "weights": weights,
                "input": moved_in,
                "output": moved_out,
                "bytes": per_image,
                "intensity": 2 * useful_macs(layer) / per_image,
                "level": level,
            }
        )
    return rows


def attainable(work: dict[str, Any], peak: float, roofs: dict[str, float]) -> tuple[float, str]:
    """The roof (GFLOP/s; GB/s for a layer without FLOPs) that applies, and its bound."""
    bandwidth = roofs.get(work["level"], roofs["memory"])
    if not work["flops"]:
        return bandwidth, f"memory ({work['level']})"
    memory = work["intensity"] * bandwidth
    return (memory, f"memory ({work['level']})") if memory < peak else (peak, "compute")


def section(results: Results) -> dict[str, Any] | None:
    table, machine = results.layers, results.machine
    record = results.manifest.get("architecture")
    if table is None or not len(table) or not record:
        return None
    try:
        architecture = from_dict(record)
    except ArchitectureError:
        return None  # the network section says why
    known = [layer.name for layer in architecture.layers]
    strangers = sorted(set(table["layer"]) - set(known))
    if strangers:
        results.notes.append(f"layers.csv times layers the network lacks: {', '.join(strangers)}")
        table = table[table["layer"].isin(known)]
        if not len(table):
            return None
    order = [b.name for b in results.backends if b.name in set(table["backend"])]
    sizes = sorted(set(table["batch_size"]))
    large = max(sizes)
    roofs = machine.get("roofs") or {}
    peak = float(machine.get("peak_gflops") or 0)
    caches = {f"L{c['level']}": c["bytes"] for c in machine.get("caches") or []}
    points = _points(table, architecture, caches, peak, roofs) if roofs and peak else []
    return {
        "order": order,
        "large": large,
        "bars": figures.layer_time_bars(
            table, order, [layer.name for layer in architecture.layers]
        ),
        "sums": _sums(table, order),
        "methods": table.drop_duplicates("backend").set_index("backend")["method"].to_dict(),
        "unsplit": [
            b.name for b in results.backends if b.present and b.name not in set(table["backend"])
        ],
        "layers": _layer_rows(architecture, caches, large, points, order, peak, roofs),
        "roofline": figures.roofline(points, peak, roofs, machine) if points else None,
        "above": [p for p in points if p["above"]],
        "sentences": _sentences(points, order) if points else [],
        "against_peer": _against_peer(table, order, [layer.name for layer in architecture.layers]),
        "has_roofs": bool(points),
    }


def _sums(table: pd.DataFrame, order: list[str]) -> list[dict[str, Any]]:
    """Per backend and batch size: the layers' sum against the whole forward pass."""
    rows = []
    for name in order:
        for size, group in table[table["backend"] == name].groupby("batch_size"):
            total, whole = float(group["seconds"].sum()), float(group["forward_s"].iloc[0])
            rows.append(
                {
                    "backend": name,
                    "batch": int(size),
                    "sum": fmt.duration(total),
                    "whole": fmt.duration(whole),
                    "ratio": f"{total / whole:.2f}" if whole > 0 else "–",
                    "within": whole > 0 and abs(total / whole - 1) <= 0.15,
                }
            )
    return rows


def _points(table, architecture, caches, peak, roofs) -> list[dict[str, Any]]:
    """One point per backend, batch size and layer: achieved rate against the roof."""
    works = {}
    out = []
    highest = max(roofs.values())
    for row in table.itertuples(index=False):
        size = int(row.batch_size)
        if size not in works:
            works[size] = {w["layer"]: w for w in layer_work(architecture, size, caches)}
        work = works[size][row.layer]
        seconds = float(row.seconds)
        if seconds <= 0:
            continue
        roof, bound = attainable(work, peak, roofs)
        if work["flops"]:
            achieved = work["flops"] / seconds / 1e9
            ceiling = min(peak, work["intensity"] * highest)
        else:
            achieved = work["bytes"] / seconds / 1e9  # GB/s
            ceiling = highest
        out.append(
            {
                "backend": row.backend,
                "batch": size,
                "layer": row.layer,
                "flops": work["flops"],
                "intensity": work["intensity"],
                "achieved": achieved,
                "roof": roof,
                "bound": bound,
                "distance": roof / achieved,
                "roof_seconds": seconds / (roof / achieved),
                "seconds": seconds,
                "above": achieved > ceiling,
            }
        )
    return out


def _layer_rows(architecture, caches, large, points, order, peak, roofs) -> list[dict[str, Any]]:
    one = {w["layer"]: w for w in layer_work(architecture, 1, caches)}
    many = {w["layer"]: w for w in layer_work(architecture, large, caches)}
    by_key = {(p["backend"], p["batch"], p["layer"]): p for p in points}
    rows = []
    for layer in architecture.layers:
        w1, wn = one[layer.name], many[layer.name]
        cells = []
        for name in order:
            cell = []
            for size in (1, large):
                point = by_key.get((name, size, layer.name))
                cell.append(f"{fmt.sig(point['distance'], 2)}×" if point else "–")
            cells.append(cell)
        rows.append(
            {
                "layer": layer.name,
                "kind": layer.kind + (" + ReLU" if layer.relu else ""),
                "macs": fmt.integer(useful_macs(layer)),
                "counted": fmt.integer(layer.macs) if useful_macs(layer) != layer.macs else None,
                "weights": fmt.kibibytes(w1["weights"]),
                "input": fmt.kibibytes(w1["input"]),
                "output": fmt.kibibytes(w1["output"]),
                "intensity": [
                    f"{fmt.sig(w['intensity'], 3)}" if w["flops"] else "0" for w in (w1, wn)
                ],
                "bound": [attainable(w, peak, roofs)[1] for w in (w1, wn)]
                if roofs and peak
                else ["–"],
                "distances": cells,
            }
        )
    return rows


def _sentences(points: list[dict[str, Any]], order: list[str]) -> list[str]:
    """One sentence per backend at batch 1: what limits it, from its layers' numbers."""
    sentences = []
    for name in order:
        mine = [p for p in points if p["backend"] == name and p["batch"] == 1]
        if not mine:
            continue
        total = sum(p["seconds"] for p in mine)
        efficiency = sum(p["roof_seconds"] for p in mine) / total
        top = max(mine, key=lambda p: p["seconds"])
        memory = sum(p["seconds"] for p in mine if p["bound"].startswith("memory"))
        share = f"{top['layer']} takes {fmt.percent(top['seconds'] / total, 0)} of its time"
        if efficiency < INTERPRETED:
            cause = (
                f"the interpreter: its layers run {fmt.sig(1 / efficiency, 2)}× slower than this "
                "machine's roofs allow"
            )
        elif memory >= total / 2:
            cause = (
                f"memory traffic: {fmt.percent(memory / total, 0)} of its time is in "
                f"memory-bound layers, and it runs at {fmt.percent(efficiency, 0)} of the roofs"
            )
        else:
            cause = (
                f"arithmetic: most of its time is in compute-bound layers, at "
                f"{fmt.percent(efficiency, 0)} of the roofs"
            )
        sentences.append(f"{name} (batch 1) is limited by {cause}; {share}.")
    return sentences


def _against_peer(table: pd.DataFrame, order: list[str], layers: list[str]) -> list[str]:
    """Per hand-written backend and batch size both it and the production peer were split at: its
    time against the peer's, layer by layer, and the layer that differs the most. Where a
    backend trails the peer, this says in which layers (each backend's layers as it was split;
    a layer the peer's profiler timed at 0, fused into another, gets no ratio)."""
    peer = next((name for name in order if name in PEERS), None)
    if peer is None:
        return []
    seconds = table.groupby(["backend", "batch_size", "layer"], sort=False)["seconds"].first()
    sizes = table.groupby("backend")["batch_size"].unique()
    sentences = []
    for name in order:
        if name in PEERS or name == REFERENCE:
            continue
        for size in sorted(set(sizes[name]) & set(sizes[peer])):
            mine = seconds.loc[(name, size)].reindex(layers)
            theirs = seconds.loc[(peer, size)].reindex(layers)
            if mine.isna().any() or theirs.isna().any() or theirs.sum() <= 0:
                continue
            gaps = mine - theirs
            widest = gaps.abs().idxmax()
            by_layer = ", ".join(
                f"{layer} {fmt.ratio(mine[layer] / theirs[layer] if theirs[layer] > 0 else None)}"
                for layer in layers
            )
            sentences.append(
                f"{name}, batch {size}: {fmt.ratio(mine.sum() / theirs.sum())} {peer}'s time "
                f"({fmt.duration(mine.sum())} against {fmt.duration(theirs.sum())} an image); "
                f"by layer {by_layer}; {widest} differs the most "
                f"({fmt.duration(abs(gaps[widest]))} {'slower' if gaps[widest] > 0 else 'faster'})."
            )
    return sentences
