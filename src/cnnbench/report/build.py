"""Turn the result tables into the template's context: verdicts first, every number formatted."""

from __future__ import annotations

import hashlib
import math
import shlex
from typing import Any

import numpy as np
import pandas as pd

from cnnbench.data import file_digests
from cnnbench.geometry import NUM_CLASSES
from cnnbench.ops import softmax
from cnnbench.steps.agreement import margins
from cnnbench.tables import LOGIT_COLUMNS

from . import figures, fmt
from . import worked_example as worked
from .inputs import REFERENCE_BACKEND, Results, _get

MAX_GALLERY = 12  # thumbnails per gallery; the rest are counted, never silently dropped
LOGIT_WARN = 1e-3  # float32 rounding across summation orders stays far below this

PASS, FAIL, WARN, NA = "pass", "fail", "warn", "na"

GRADCHECK_REFERENCES = {
    # substring of the ``reference`` column (first match wins) -> what a reader should know
    "float64": "PyTorch autograd in float64 on the same weights and images, compared with the "
    "NumPy gradient computed in float64: both are exact up to float64 rounding, so the tolerance "
    "is tight. A bug in any backward formula shows here.",
    "float32": "PyTorch autograd in float32, compared with the NumPy gradient in float32: the "
    "precision the network really runs at; summation order makes them differ slightly. For a "
    "confident model, dLoss/dlogits = softmax − onehot is a near-cancellation, so every float32 "
    "gradient (PyTorch's too) is only good to about 1e-4 to 1e-3 of the tensor's scale: the "
    "tolerance is 1e-4 or three times PyTorch float32's own error against float64, whichever "
    "is larger.",
    "finite": "Central finite differences (L(θ+h) − L(θ−h)) / 2h of the float64 loss at randomly "
    "sampled coordinates of each tensor: independent of PyTorch, it checks the calculus itself. "
    "Coordinates whose step would flip a ReLU are replaced, never silently accepted.",
    "autograd": "PyTorch autograd on the same weights and images.",
    "torch": "PyTorch autograd on the same weights and images.",
}


def build_context(results: Results, generated_at: str) -> dict[str, Any]:
    stats = latency_stats(results)
    context: dict[str, Any] = {
        "generated_at": generated_at,
        "notes": list(results.notes),
        "reference": results.reference.name if results.reference else None,
        "reference_is_torch": bool(
            results.reference and results.reference.name == REFERENCE_BACKEND
        ),
    }
    context["dataset"] = dataset_section(results)
    context["weights"] = weights_check(results)
    context["agreement"] = agreement_section(results)
    context["gradcheck"] = gradcheck_section(results)
    context["training"] = training_section(results)
    context["timing"] = timing_section(results, stats)
    context["worked"] = worked_section(results)
    context["pipeline"] = pipeline_time(results)
    context["provenance"] = provenance_section(results)
    context["summary"] = summary_section(results, stats, context)
    context["notes"] = list(dict.fromkeys(context["notes"]))
    return context


# ---------------------------------------------------------------------------- helpers


def _badge(status: str, text: str) -> dict[str, str]:
    return {"status": status, "text": text}


def _images_phrase(results: Results, count: int) -> str:
    total = len(results.test_images) if results.test_images is not None else None
    if total and count < total:
        return f"the first {fmt.integer(count)} of {fmt.integer(total)} test images"
    return f"{fmt.integer(count)} test images"


def _pair(agreement: pd.DataFrame | None, a: str, b: str) -> dict[str, Any] | None:
    if agreement is None or a == b:
        return None
    rows = agreement[
        ((agreement.backend_a == a) & (agreement.backend_b == b))
        | ((agreement.backend_a == b) & (agreement.backend_b == a))
    ]
    return rows.iloc[0].to_dict() if len(rows) else None


def latency_stats(results: Results) -> dict[str, dict[str, float]]:
    stats = {}
    for backend in results.present_backends:
        latency = backend.table["latency_s"].to_numpy(dtype=float)
        p50, p95, p99 = np.percentile(latency, [50, 95, 99])
        stats[backend.name] = {
            "images": len(latency),
            "median": float(p50),
            "p95": float(p95),
            "p99": float(p99),
            "mean": float(latency.mean()),
            "min": float(latency.min()),
            "max": float(latency.max()),
            "total": float(latency.sum()),
        }
    return stats


def _thumbnail(results: Results, index: int) -> str | None:
    images = results.test_images
    if images is None or not 0 <= index < len(images):
        return None
    return figures.image_uri(images[index])


# ---------------------------------------------------------------------------- dataset and weights


def dataset_section(results: Results) -> dict[str, Any]:
    files = []
    configured = _get(results.config, "dataset", "files", default={}) or {}
    recorded = _get(results.manifest, "dataset", "files", default={}) or {}
    for role in sorted(set(configured) | set(recorded)):
        want = configured.get(role) or {}
        got = recorded.get(role) or {}
        name = want.get("file") or got.get("file")
        entry = {
            "role": role,
            "file": name,
            "md5": want.get("md5") or got.get("md5"),
            "sha256": want.get("sha256") or got.get("sha256"),
        }
        problems = []
        for digest in ("md5", "sha256"):
            if want.get(digest) and got.get(digest) and want[digest].lower() != got[digest].lower():
                problems.append(f"manifest {digest} differs from the config")
        path = results.root / "data" / name if name else None
        if path is not None and path.is_file():
            actual = file_digests(path)
            for digest in ("md5", "sha256"):
                if entry[digest] and actual[digest] != entry[digest].lower():
                    problems.append(f"{digest} of the file on disk is {actual[digest]}")
            checked = [d for d in ("md5", "sha256") if entry[d]]
            if problems:
                entry["badge"] = _badge(FAIL, "mismatch")
            elif checked:
                entry["badge"] = _badge(PASS, "verified")
            else:
                entry["badge"] = _badge(WARN, "no checksum given")
        elif problems:
            entry["badge"] = _badge(FAIL, "mismatch")
        else:
            entry["badge"] = _badge(NA, "not on disk")
        entry["problems"] = problems
        files.append(entry)
    statuses = {f["badge"]["status"] for f in files}
    if not files:
        badge = _badge(NA, "no dataset files listed")
    elif FAIL in statuses:
        badge = _badge(FAIL, "checksum mismatch")
    elif statuses == {PASS}:
        badge = _badge(PASS, f"all {len(files)} files verified")
    else:
        verified = sum(f["badge"]["status"] == PASS for f in files)
        badge = _badge(WARN, f"{verified} of {len(files)} files verified")
    name = (
        _get(results.config, "dataset", "name") or _get(results.manifest, "dataset", "name") or "–"
    )
    mirrors = _get(results.config, "dataset", "mirrors", default=[]) or []
    return {"name": name, "files": files, "badge": badge, "mirrors": mirrors}


def weights_check(results: Results) -> dict[str, Any]:
    recorded = results.manifest.get("sha256")
    path = results.root / "model" / "weights.npz"
    actual = file_digests(path)["sha256"] if path.is_file() else None
    if recorded and actual:
        badge = (
            _badge(PASS, "matches the file")
            if actual == recorded.lower()
            else _badge(FAIL, "differs from the file")
        )
    elif recorded:
        badge = _badge(NA, "weights.npz not on disk")
    else:
        badge = _badge(NA, "not recorded")
    parameters = results.manifest.get("parameters") or {}
    rows = []
    total = 0
    for name, spec in parameters.items():
        shape = spec.get("shape", []) if isinstance(spec, dict) else []
        count = math.prod(shape) if shape else 0
        total += count
        rows.append(
            {
                "name": name,
                "shape": " × ".join(str(s) for s in shape),
                "dtype": spec.get("dtype", "") if isinstance(spec, dict) else "",
                "count": fmt.integer(count),
            }
        )
    return {
        "sha256": recorded or actual,
        "actual": actual,
        "badge": badge,
        "parameters": rows,
        "total_parameters": fmt.integer(total) if rows else "–",
    }


# ---------------------------------------------------------------------------- agreement


def agreement_section(results: Results) -> dict[str, Any]:
    present = [b.name for b in results.present_backends]
    reference = results.reference.name if results.reference else None
    table = results.agreement
    out: dict[str, Any] = {
        "pairs": [],
        "figure": None,
        "per_backend": {},
        "disagreements": [],
        "disagreement_count": 0,
        "disagreement_hidden": 0,
    }
    if table is not None and len(table):
        names = [n for n in present if ((table.backend_a == n) | (table.backend_b == n)).any()]
        for row in table.itertuples(index=False):
            out["pairs"].append(
                {
                    "a": row.backend_a,
                    "b": row.backend_b,
                    "images": fmt.integer(row.images),
                    "agree": fmt.integer(row.agree),
                    "fraction": fmt.percent(row.agree_fraction),
                    "differ": fmt.integer(row.images - row.agree),
                    "max_diff": fmt.scientific(row.max_abs_logit_diff),
                    "badge": _badge(
                        PASS if row.agree == row.images else FAIL,
                        "all agree"
                        if row.agree == row.images
                        else f"{row.images - row.agree:,} differ",
                    ),
                }
            )
        if len(names) >= 2:
            counts = pd.DataFrame(np.nan, index=names, columns=names)
            images = counts.copy()
            diffs = counts.copy()
            for a in names:
                for b in names:
                    if a == b:
                        n = len(results.backend(a).table)
                        counts.loc[a, b], images.loc[a, b], diffs.loc[a, b] = n, n, 0.0
                        continue
                    pair = _pair(table, a, b)
                    if pair:
                        counts.loc[a, b] = pair["agree"]
                        images.loc[a, b] = pair["images"]
                        diffs.loc[a, b] = pair["max_abs_logit_diff"]
            out["figure"] = figures.agreement_heatmaps(counts, images, diffs)

    # verdict: every backend against the reference (torch)
    others = [n for n in present if n != reference]
    failing, missing, large = [], [], []
    largest = 0.0
    images_compared = None
    for name in others:
        pair = _pair(table, reference, name)
        if pair is None:
            missing.append(name)
            continue
        images_compared = (
            int(pair["images"])
            if images_compared is None
            else min(images_compared, int(pair["images"]))
        )
        diff = float(pair["max_abs_logit_diff"])
        largest = max(largest, diff)
        if int(pair["agree"]) != int(pair["images"]):
            failing.append(
                f"{name} differs on {int(pair['images'] - pair['agree']):,} of {int(pair['images']):,} images"
            )
        if diff > LOGIT_WARN:
            large.append(f"{name} ({fmt.scientific(diff)})")
        out["per_backend"][name] = pair
    ref_label = "PyTorch" if reference == REFERENCE_BACKEND else reference
    if not reference:
        badge, text = _badge(NA, "no results"), "No backend produced results."
    elif not others:
        badge, text = (
            _badge(NA, "one backend"),
            f"Only {reference} ran; there is nothing to compare.",
        )
    elif table is None:
        badge, text = (
            _badge(NA, "not checked"),
            "agreement.csv is missing, so agreement was not checked.",
        )
    elif failing:
        badge = _badge(FAIL, "disagree")
        text = (
            f"Not every backend predicts the same class as {ref_label}: " + "; ".join(failing) + "."
        )
    elif missing:
        badge = _badge(WARN, "incomplete")
        text = f"No agreement row for {', '.join(missing)} against {ref_label}."
    elif large:
        badge = _badge(WARN, "logits differ")
        text = (
            f"Every backend predicts the same class as {ref_label} on all "
            f"{fmt.integer(images_compared)} images, but logits differ by more than "
            f"{fmt.scientific(LOGIT_WARN)}: {', '.join(large)}."
        )
    else:
        badge = _badge(PASS, "identical predictions")
        text = (
            f"All {len(others)} backends predict the same class as {ref_label} on all "
            f"{fmt.integer(images_compared)} images; the largest |logit difference| is "
            f"{fmt.scientific(largest)}."
        )
    out["badge"], out["verdict"] = badge, text

    # thumbnails of images where backends disagree, with every backend's logits
    dis = results.disagreements
    if dis is not None and len(dis):
        indices = sorted(int(i) for i in dis["index"].unique())
        out["disagreement_count"] = len(indices)
        out["disagreement_hidden"] = max(len(indices) - MAX_GALLERY, 0)
        for index in indices[:MAX_GALLERY]:
            rows = dis[dis["index"] == index]
            label = int(rows["label"].iloc[0])
            backends = []
            for backend in results.present_backends:
                hit = backend.table[backend.table["index"] == index]
                if hit.empty:
                    continue
                logits = hit[LOGIT_COLUMNS].to_numpy(dtype=float)[0]
                backends.append(
                    {
                        "name": backend.name,
                        "pred": int(hit["pred"].iloc[0]),
                        "margin": fmt.scientific(margins(logits[None, :])[0]),
                        "logits": [
                            {"value": f"{v:.4f}", "top": k == int(np.argmax(logits))}
                            for k, v in enumerate(logits)
                        ],
                    }
                )
            out["disagreements"].append(
                {
                    "index": index,
                    "label": label,
                    "thumbnail": _thumbnail(results, index),
                    "pairs": ", ".join(
                        sorted({f"{r.backend_a} vs {r.backend_b}" for r in rows.itertuples()})
                    ),
                    "backends": backends,
                }
            )

    # the model's own mistakes, seen through the reference backend
    out["mistakes"] = mistakes_section(results)
    return out


def mistakes_section(results: Results) -> dict[str, Any] | None:
    reference = results.reference
    if reference is None:
        return None
    table = reference.table
    labels = table["label"].to_numpy(dtype=int)
    preds = table["pred"].to_numpy(dtype=int)
    matrix = pd.crosstab(pd.Series(labels, name="true"), pd.Series(preds, name="predicted"))
    matrix = matrix.reindex(index=range(NUM_CLASSES), columns=range(NUM_CLASSES), fill_value=0)
    wrong = np.flatnonzero(preds != labels)
    probabilities = softmax(table[LOGIT_COLUMNS].to_numpy(dtype=float))
    confidence = probabilities.max(axis=1)
    order = wrong[np.argsort(-confidence[wrong], kind="stable")]
    gallery = []
    for row in order[:MAX_GALLERY]:
        index = int(table["index"].iloc[row])
        gallery.append(
            {
                "index": index,
                "label": int(labels[row]),
                "pred": int(preds[row]),
                "confidence": fmt.percent(confidence[row], 1),
                "label_probability": fmt.percent(probabilities[row, labels[row]], 1),
                "thumbnail": _thumbnail(results, index),
            }
        )
    return {
        "backend": reference.name,
        "images": fmt.integer(len(table)),
        "wrong": fmt.integer(len(wrong)),
        "images_phrase": _images_phrase(results, len(table)),
        "figure": figures.confusion_matrix(matrix, f"{reference.name}: true vs predicted class"),
        "gallery": gallery,
        "hidden": max(len(wrong) - MAX_GALLERY, 0),
    }


# ---------------------------------------------------------------------------- gradient checks


def gradcheck_section(results: Results) -> dict[str, Any]:
    table = results.gradcheck
    if table is None or table.empty:
        return {
            "rows": [],
            "badge": _badge(NA, "not run"),
            "verdict": "gradcheck.csv is missing.",
            "references": [],
        }
    rows = []
    for row in table.to_dict("records"):
        rows.append(
            {
                "tensor": row.get("tensor", ""),
                "implementation": row.get("implementation", ""),
                "reference": row.get("reference", ""),
                "dtype": row.get("dtype", ""),
                "max_abs_err": fmt.scientific(row.get("max_abs_err")),
                "max_rel_err": fmt.scientific(row.get("max_rel_err")),
                "tolerance": fmt.scientific(row.get("tolerance")),
                "badge": _badge(PASS, "pass") if row.get("passed") else _badge(FAIL, "fail"),
            }
        )
    passed = int(table["passed"].sum()) if "passed" in table else 0
    failed = [
        f"{r['tensor']} ({r['implementation']} vs {r['reference']})"
        for r in rows
        if r["badge"]["status"] == FAIL
    ]
    if failed:
        badge = _badge(FAIL, f"{len(failed)} failed")
        verdict = f"{passed} of {len(rows)} gradient checks passed; failed: {', '.join(failed)}."
    else:
        badge = _badge(PASS, "all passed")
        verdict = f"All {len(rows)} gradient checks passed."
    references = []
    for name in dict.fromkeys(str(r) for r in table.get("reference", pd.Series(dtype=str))):
        meaning = next(
            (text for key, text in GRADCHECK_REFERENCES.items() if key in name.lower()),
            "Compared as written in gradcheck.csv.",
        )
        references.append({"name": name, "meaning": meaning})
    return {
        "rows": rows,
        "badge": badge,
        "verdict": verdict,
        "passed": passed,
        "total": len(rows),
        "references": references,
        "matrix": gradcheck_matrix(rows),
    }


def gradcheck_matrix(rows: list[dict[str, Any]]) -> dict[str, Any] | None:
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


# ---------------------------------------------------------------------------- training


def training_section(results: Results) -> dict[str, Any]:
    metrics = results.metrics
    manifest = results.manifest
    final = manifest.get("final_metrics") or {}
    accuracy = final.get("test_accuracy")
    if metrics is not None and "test_accuracy" in metrics and metrics["test_accuracy"].max() > 1:
        metrics = metrics.assign(test_accuracy=metrics["test_accuracy"] / 100)  # given in percent
    if accuracy is None and metrics is not None and len(metrics) and "test_accuracy" in metrics:
        accuracy = float(metrics["test_accuracy"].iloc[-1])
    if accuracy is not None and accuracy > 1:
        accuracy = accuracy / 100
    out: dict[str, Any] = {
        "test_accuracy": fmt.percent(accuracy) if accuracy is not None else "–",
        "test_loss": f"{final['test_loss']:.4f}" if final.get("test_loss") is not None else "–",
        "train_loss": f"{final['train_loss']:.4f}" if final.get("train_loss") is not None else "–",
        "config": [],
        "rows": [],
        "figure": None,
        "total_seconds": "–",
    }
    train_config = manifest.get("train_config") or _get(results.config, "train", default={}) or {}
    labels = {
        "epochs": "epochs",
        "batch_size": "batch size",
        "lr": "learning rate",
        "seed": "seed",
        "device": "device",
        "limit": "training images",
        "threads": "threads",
    }
    for key, value in train_config.items():
        if key == "limit" and value is None:
            value = "all"
        out["config"].append({"key": labels.get(key, key), "value": value})
    if metrics is not None and len(metrics):
        for row in metrics.to_dict("records"):
            out["rows"].append(
                {
                    "epoch": int(row["epoch"]),
                    "train_loss": f"{row['train_loss']:.4f}" if "train_loss" in row else "–",
                    "test_loss": f"{row['test_loss']:.4f}" if "test_loss" in row else "–",
                    "test_accuracy": fmt.percent(row.get("test_accuracy")),
                    "seconds": fmt.duration(row.get("seconds")),
                }
            )
        if "seconds" in metrics:
            out["total_seconds"] = fmt.duration(float(metrics["seconds"].sum()))
        if {"epoch", "test_accuracy"} <= set(metrics):
            out["figure"] = figures.training_curves(metrics)
    return out


# ---------------------------------------------------------------------------- timing


def timing_section(results: Results, stats: dict[str, dict[str, float]]) -> dict[str, Any]:
    present = results.present_backends
    out: dict[str, Any] = {"rows": [], "figure": None, "throughput": None, "method": {}}
    torch_stats = stats.get(REFERENCE_BACKEND)
    for backend in present:
        s = stats[backend.name]
        meta = backend.meta
        compile_s = meta.get("compile_s")
        out["rows"].append(
            {
                "name": backend.name,
                "images": fmt.integer(s["images"]),
                "median": fmt.duration(s["median"]),
                "p95": fmt.duration(s["p95"]),
                "p99": fmt.duration(s["p99"]),
                "mean": fmt.duration(s["mean"]),
                "total": fmt.duration(s["total"]),
                "speedup": "reference"
                if backend.name == REFERENCE_BACKEND
                else (fmt.speedup(torch_stats["median"], s["median"]) if torch_stats else "–"),
                "load": fmt.duration(meta.get("load_s")),
                "compile": fmt.duration(compile_s) if compile_s is not None else "none",
                "threads": meta.get("threads", "–"),
                "warmup": meta.get("warmup", "–"),
                "shards": meta.get("shards", "–"),
            }
        )
    if present:
        latencies = pd.concat(
            [
                pd.DataFrame({"backend": b.name, "latency_s": b.table["latency_s"].astype(float)})
                for b in present
            ],
            ignore_index=True,
        )
        latencies = latencies[latencies["latency_s"] > 0]
        if len(latencies):
            out["figure"] = figures.latency_distributions(latencies, [b.name for b in present])
    out["throughput"] = throughput_section(results)
    out["method"] = measurement_method(results)
    return out


def throughput_section(results: Results) -> dict[str, Any] | None:
    table = results.throughput
    if table is None or table.empty:
        return None
    present = [b.name for b in results.backends if table["backend"].eq(b.name).any()]
    extra = sorted(set(table["backend"]) - set(present))
    order = present + extra
    sizes = sorted(int(s) for s in table["batch_size"].unique())
    rows = []
    for name in order:
        cells = []
        for size in sizes:
            hit = table[(table["backend"] == name) & (table["batch_size"] == size)]
            ref = table[(table["backend"] == REFERENCE_BACKEND) & (table["batch_size"] == size)]
            if hit.empty:
                cells.append({"rate": "–", "speedup": ""})
                continue
            rate = float(hit["images_per_s"].iloc[0])
            speed = ""
            if name != REFERENCE_BACKEND and not ref.empty:
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


def measurement_method(results: Results) -> dict[str, Any]:
    env = results.environment
    inference = _get(results.config, "inference", default={}) or {}
    metas = [b.meta for b in results.present_backends if b.meta]
    threads = sorted({str(m.get("threads")) for m in metas if m.get("threads") is not None}) or (
        [str(inference["threads"])] if "threads" in inference else []
    )
    warmups = sorted({str(m.get("warmup")) for m in metas if m.get("warmup") is not None}) or (
        [str(inference["warmup"])] if "warmup" in inference else []
    )
    load = env.get("load_average")
    if isinstance(load, list | tuple):
        load_text = " / ".join(f"{float(v):.2f}" for v in load) + " (1 / 5 / 15 min)"
    elif load is not None:
        load_text = str(load)
    else:
        load_text = "–"
    timed = []
    if results.benchmarks is not None:
        for row in results.benchmarks.to_dict("records"):
            if row["name"].startswith(("infer", "throughput")):
                timed.append(
                    {
                        "name": row["name"],
                        "s": fmt.duration(row.get("s")),
                        "mean_load": _core_share(row.get("mean_load")),
                    }
                )
    return {
        "threads": ", ".join(threads) or "–",
        "warmup": ", ".join(warmups) or "–",
        "cpu": env.get("cpu_model") or "–",
        "cores": env.get("logical_cores", "–"),
        "blas": blas_lines(env.get("blas")),
        "load": load_text,
        "timed_rules": timed,
        "batch_sizes": ", ".join(str(s) for s in inference.get("throughput_batch_sizes", []) or []),
    }


def _core_share(mean_load) -> str:
    """A benchmark file's mean_load (percent of one core) as text."""
    try:
        return f"{float(mean_load):.0f} % of a core" if math.isfinite(float(mean_load)) else "–"
    except (TypeError, ValueError):
        return "–"


def plain(value) -> str:
    """A JSON value as one readable line: dicts as 'key: value; ...', lists comma-separated."""
    if isinstance(value, dict):
        return "; ".join(f"{key}: {plain(item)}" for key, item in value.items()) or "none"
    if isinstance(value, list | tuple):
        return ", ".join(plain(item) for item in value) or "none"
    if value is None:
        return "–"
    return str(value)


def blas_lines(blas) -> list[str]:
    """threadpoolctl's info (list of dicts) or plain strings -> one readable line per library."""
    if not blas:
        return []
    if isinstance(blas, dict):
        blas = [blas]
    lines = []
    for item in blas:
        if isinstance(item, dict):
            name = item.get("internal_api") or item.get("name") or item.get("user_api") or "library"
            parts = [str(name), str(item.get("version") or "")]
            details = []
            if item.get("threading_layer"):
                details.append(f"{item['threading_layer']} threading")
            if item.get("num_threads") is not None:
                details.append(f"{item['num_threads']} threads")
            if item.get("architecture"):
                details.append(str(item["architecture"]))
            line = " ".join(p for p in parts if p)
            if details:
                line += f" ({', '.join(details)})"
            if item.get("prefix") and item.get("prefix") != name:
                line += f" — {item['prefix']}"
            lines.append(line)
        else:
            lines.append(str(item))
    return lines


# ---------------------------------------------------------------------------- worked example


def worked_section(results: Results) -> dict[str, Any]:
    data = worked.compute(results.worked_example_torch)

    def grid(array: np.ndarray) -> list[list[str]]:
        return [[f"{v:g}" for v in row] for row in array]

    columns = []
    for entry in data["columns"]:
        output = entry.get("output")
        channels = (
            [grid(output[0, c]) for c in range(output.shape[1])]
            if (output is not None and output.ndim == 4 and not entry.get("error"))
            else []
        )
        columns.append(
            {
                "name": entry["name"],
                "call": entry["call"],
                "channels": channels,
                "error": entry.get("error"),
                "badge": _badge(PASS, "matches")
                if entry["matches"]
                else _badge(FAIL, "differs" if channels else "missing"),
            }
        )
    x, w, b = data["x"], data["w"], data["b"]
    return {
        "inputs": [grid(x[0, c]) for c in range(x.shape[1])],
        "kernels": [[grid(w[o, c]) for c in range(w.shape[1])] for o in range(w.shape[0])],
        "bias": [f"{v:g}" for v in b],
        "stride": data["stride"],
        "padding": data["padding"],
        "columns": columns,
        "has_torch": data["has_torch"],
        "badge": _badge(PASS, "all match") if data["passed"] else _badge(FAIL, "mismatch"),
    }


# ---------------------------------------------------------------------------- pipeline time, provenance


def pipeline_time(results: Results) -> dict[str, Any]:
    """Elapsed span from benchmark file times, and the sum of rule wall times (one job at a time)."""
    bench = results.benchmarks
    if bench is None or bench.empty:
        return {
            "text": "–",
            "short": "no benchmark files",
            "detail": "no benchmarks/*.tsv found",
            "span": None,
            "sum": None,
        }
    total = float(bench["s"].sum())
    span = float(bench["end"].max() - bench["start"].min())
    rules = len(bench)
    plausible = span >= float(bench["s"].max()) - 1.0 and span <= total * 1.5 + 60
    if plausible:
        text = fmt.duration(span)
        short = f"elapsed, first rule start to last rule end; rule times add up to {fmt.duration(total)}"
        detail = (
            f"elapsed wall-clock time from the start of the first to the end of the last of "
            f"{rules} benchmarked rules (from the benchmark files' times, this report excluded); "
            f"the rules' own wall times add up to {fmt.duration(total)}"
        )
        return {"text": text, "short": short, "detail": detail, "span": span, "sum": total}
    text = fmt.duration(total)
    short = f"sum of {rules} rule wall times (they ran in separate sessions)"
    detail = (
        f"sum of the wall times of {rules} benchmarked rules (this report excluded); the "
        f"benchmark files come from separate runs, so an elapsed span would mislead"
    )
    return {"text": text, "short": short, "detail": detail, "span": None, "sum": total}


def provenance_section(results: Results) -> dict[str, Any]:
    env = results.environment
    packages: dict[str, str] = {}
    for name, version in (results.manifest.get("versions") or {}).items():
        packages[name] = str(version)
    for name, version in (env.get("packages") or {}).items():
        packages[name] = str(version)
    if env.get("python"):
        packages["python"] = str(env["python"]).split()[0]
    rows = []
    if results.benchmarks is not None:
        for row in results.benchmarks.to_dict("records"):
            rows.append(
                {
                    "name": (row.get("rule") and f"{row['rule']} ({row['name']})") or row["name"],
                    "s": fmt.duration(row.get("s")),
                    "max_rss": fmt.megabytes(row.get("max_rss")),
                    "cpu_time": fmt.duration(row.get("cpu_time")),
                    "mean_load": _core_share(row.get("mean_load")),
                    "repeats": row.get("repeats", 1),
                }
            )
    config_path = results.config_path
    if config_path is not None:
        command = f"snakemake --cores 4 --configfile {shlex.quote(str(config_path))}"
        command_note = f"{config_path} is the config file this report was given, shown below."
    elif results.config:
        command = "snakemake --cores 4 --configfile run-config.yaml"
        command_note = (
            "run-config.yaml: the config below saved as a file. It is this run's effective "
            "config, command-line overrides included, so it reproduces the run exactly."
        )
    else:
        command = "snakemake --cores 4"
        command_note = "No config was given to the report; the command uses config.yaml."
    config_sha = (
        hashlib.sha256(results.config_text.encode()).hexdigest() if results.config_text else None
    )
    environment_rows = []
    for key in ("cpu_model", "logical_cores", "threads", "platform", "timestamp"):
        if env.get(key) is not None:
            environment_rows.append({"key": key.replace("_", " "), "value": env[key]})
    for key, value in env.items():
        if key not in {
            "cpu_model",
            "logical_cores",
            "threads",
            "platform",
            "timestamp",
            "python",
            "packages",
            "blas",
            "load_average",
        }:
            environment_rows.append(
                {
                    "key": key.replace("_", " "),
                    "value": plain(value),
                }
            )
    return {
        "packages": sorted(packages.items(), key=lambda kv: kv[0].lower()),
        "environment": environment_rows,
        "blas": blas_lines(env.get("blas")),
        "benchmarks": rows,
        "command": command,
        "config_text": results.config_text or "(no config given)",
        "config_sha256": config_sha,
        "config_path": str(config_path) if config_path else None,
        "command_note": command_note,
    }


# ---------------------------------------------------------------------------- summary


def summary_section(
    results: Results, stats: dict[str, dict[str, float]], context: dict[str, Any]
) -> dict[str, Any]:
    accuracy = results.accuracy
    torch_stats = stats.get(REFERENCE_BACKEND)
    reference = results.reference.name if results.reference else None
    rows = []
    for backend in results.backends:
        if not backend.present:
            rows.append({"name": backend.name, "missing": True})
            continue
        table = backend.table
        computed = float((table["pred"] == table["label"]).mean())
        acc_row = accuracy[accuracy["backend"] == backend.name] if accuracy is not None else None
        if acc_row is not None and len(acc_row):
            acc = float(acc_row["accuracy"].iloc[0])
            correct, images = int(acc_row["correct"].iloc[0]), int(acc_row["images"].iloc[0])
            if images != len(table) or not math.isclose(acc, computed, abs_tol=1e-9):
                context["notes"].append(
                    f"accuracy.csv gives {backend.name} {fmt.percent(acc)} on {images:,} images, but "
                    f"inference/{backend.name}.csv gives {fmt.percent(computed)} on {len(table):,}"
                )
        else:
            acc, correct, images = (
                computed,
                int((table["pred"] == table["label"]).sum()),
                len(table),
            )
        pair = (
            _pair(results.agreement, reference, backend.name) if backend.name != reference else None
        )
        s = stats[backend.name]
        rows.append(
            {
                "name": backend.name,
                "missing": False,
                "is_reference": backend.name == reference,
                "images": fmt.integer(images),
                "accuracy": fmt.percent(acc),
                "correct": fmt.integer(correct),
                "agree": (
                    "reference"
                    if backend.name == reference
                    else (
                        f"{fmt.integer(pair['agree'])} / {fmt.integer(pair['images'])}"
                        if pair
                        else "–"
                    )
                ),
                "agree_badge": (
                    None
                    if backend.name == reference or not pair
                    else _badge(
                        PASS if pair["agree"] == pair["images"] else FAIL,
                        "same" if pair["agree"] == pair["images"] else "differs",
                    )
                ),
                "max_diff": "–" if not pair else fmt.scientific(pair["max_abs_logit_diff"]),
                "median": fmt.duration(s["median"]),
                "p95": fmt.duration(s["p95"]),
                "speedup": (
                    "reference"
                    if backend.name == REFERENCE_BACKEND
                    else fmt.speedup(torch_stats["median"], s["median"])
                    if torch_stats
                    else "–"
                ),
                "total": fmt.duration(s["total"]),
            }
        )
    missing = [r["name"] for r in rows if r["missing"]]
    if missing:
        context["notes"].append("no inference results for " + ", ".join(missing))
    images = [stats[b.name]["images"] for b in results.present_backends]
    fastest = min(stats.items(), key=lambda kv: kv[1]["median"])[0] if stats else None
    worked_ok = context["worked"]["badge"]["status"] == PASS
    verdicts = [
        _verdict(
            "Same answers as PyTorch?",
            context["agreement"]["badge"],
            context["agreement"]["verdict"],
            "#agreement",
        ),
        _verdict(
            "Gradients correct?",
            context["gradcheck"]["badge"],
            context["gradcheck"]["verdict"],
            "#gradients",
        ),
        _verdict(
            "Worked example",
            context["worked"]["badge"],
            "The 4×4 example gives the hand-derived result with loops and im2col"
            + (" and PyTorch" if context["worked"]["has_torch"] else "")
            + "."
            if worked_ok
            else "The 4×4 example does not give the hand-derived result in every column.",
            "#worked-example",
        ),
        _verdict(
            "Input data verified?",
            context["dataset"]["badge"],
            f"{context['dataset']['name']}: md5 and sha256 of the files on disk checked against the config.",
            "#provenance",
        ),
    ]
    return {
        "rows": rows,
        "verdicts": verdicts,
        "fastest": fastest,
        "images_phrase": _images_phrase(results, min(images)) if images else "no images",
        "limited": bool(
            images and results.test_images is not None and min(images) < len(results.test_images)
        ),
    }


def _verdict(title: str, badge: dict[str, str], text: str, link: str) -> dict[str, Any]:
    return {"title": title, "badge": badge, "text": text, "link": link}
