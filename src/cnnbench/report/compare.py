"""Experiments side by side: results/report.html and results/experiments.csv for a sweep.

    python -m cnnbench.report.compare JOB

JOB (cnnbench.common.job): settings {"experiments": {name: that experiment's whole config}}, in
the sweep's order; input: ``inference``, every experiment's inference/<backend>.csv and .json,
backend by backend in its config's order, and for every other name a list of one file per
experiment, in the same order: ``report`` (its own full report, linked) and the report inputs
the comparison reads (``metrics``, ``training_numpy_summary``, ``throughput``, ``agreement``,
``accuracy``, ``gradcheck``; see cnnbench.report.inputs); output: ``html`` and ``csv``. Like the report, it reads result tables only and never runs a model: parameters
and multiply-adds come from each experiment's architecture (shapes, no weights).

The table shows only the settings that differ between experiments (as ``dvc exp show
--only-changed`` does); a dataset shows as its name (its files and mirrors are left out).
"""

from __future__ import annotations

import datetime as _dt
import os
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import yaml

from cnnbench.backends import PEERS, REFERENCE
from cnnbench.common.files import atomic_output, write_table
from cnnbench.common.job import Job, run_job
from cnnbench.network.architecture import from_config

from . import figures, fmt
from .common import FAIL, NA, PASS, badge, latency_stats, pair, template
from .inputs import Results, load_results
from .sections import agreement, gradcheck

# results/experiments.csv: one row per experiment and backend; the changed settings (dotted
# config keys) come between ``experiment`` and these
COLUMNS = [
    "parameters",
    "macs",
    "test_accuracy_torch",
    "test_accuracy_numpy",
    "agreement",
    "gradcheck",
    "backend",
    "latency_median_s",
    "throughput_batch_size",
    "throughput_images_per_s",
    "same_class_as_reference",
]
HIDDEN_SETTINGS = ("dataset.files", "dataset.mirrors")  # a dataset shows as its name


def changed_settings(configs: dict[str, dict]) -> dict[str, dict[str, str]]:
    """Per experiment, the dotted config keys whose values differ between experiments, each value
    as compact YAML (lists and mappings inline); a key one experiment lacks counts as changed."""
    flat = {name: dict(_flatten(config, "")) for name, config in configs.items()}
    keys = list(dict.fromkeys(key for values in flat.values() for key in values))
    changed = [
        key
        for key in keys
        if not key.startswith(HIDDEN_SETTINGS)
        and len({values.get(key, "–") for values in flat.values()}) > 1
    ]
    return {name: {key: values.get(key, "–") for key in changed} for name, values in flat.items()}


def _flatten(value: Any, prefix: str):
    if isinstance(value, dict):
        for key, item in value.items():
            yield from _flatten(item, f"{prefix}.{key}" if prefix else str(key))
    else:
        text = yaml.safe_dump(value, default_flow_style=True, width=10**6).strip()
        yield prefix, text.removesuffix("\n...").removesuffix("...").strip()


def experiment_rows(name: str, config: dict, results: Results) -> list[dict[str, Any]]:
    """One experiment's rows of experiments.csv (one per backend that ran), settings aside."""
    architecture = from_config(config)
    metrics = results.metrics
    summary = results.training_numpy_summary
    agreement_badge, _ = agreement.verdict(results)
    gradcheck_badge = gradcheck.section(results)["badge"]
    stats = latency_stats(results)
    rows = []
    for backend in results.present_backends:
        batch_size, rate = _largest_batch(results.throughput, backend.name)
        same = pair(results.agreement, REFERENCE, backend.name)
        rows.append(
            {
                "experiment": name,
                "parameters": architecture.parameter_count,
                "macs": architecture.macs,
                "test_accuracy_torch": (
                    float(metrics["test_accuracy"].iloc[-1]) if metrics is not None else None
                ),
                "test_accuracy_numpy": summary.get("test_accuracy_numpy"),
                "agreement": agreement_badge["status"],
                "gradcheck": gradcheck_badge["status"],
                "backend": backend.name,
                "latency_median_s": stats[backend.name]["median"],
                "throughput_batch_size": batch_size,
                "throughput_images_per_s": rate,
                "same_class_as_reference": (
                    1.0 if backend.name == REFERENCE else (same["agree_fraction"] if same else None)
                ),
            }
        )
    return rows


def _largest_batch(throughput: pd.DataFrame | None, backend: str) -> tuple[Any, Any]:
    """(batch size, images per second) of the backend's largest batch in throughput.csv."""
    if throughput is None:
        return None, None
    own = throughput[throughput["backend"] == backend]
    if own.empty:
        return None, None
    row = own.loc[own["batch_size"].idxmax()]
    return int(row["batch_size"]), float(row["images_per_s"])


def fitted_slopes(table: pd.DataFrame) -> dict[str, float | None]:
    """Per backend, the least-squares slope of log latency against log multiply-adds: how its
    cost grows with the work (1: in proportion). None where fewer than two sizes of work ran."""
    slopes: dict[str, float | None] = {}
    for backend, group in table.groupby("backend", sort=False):
        group = group.dropna(subset=["latency_median_s"])
        if group["macs"].nunique() < 2:
            slopes[backend] = None
            continue
        x = np.log(group["macs"].to_numpy(dtype=float))
        y = np.log(group["latency_median_s"].to_numpy(dtype=float))
        slopes[backend] = float(np.polyfit(x, y, 1)[0])
    return slopes


def load(job: Job) -> tuple[dict[str, dict], dict[str, Results], dict[str, Path]]:
    """The experiments' configs, their results (as the report reads them) and report paths."""
    configs = job.settings["experiments"]
    inference = job.paths("input", "inference")
    files = {kind: job.paths("input", kind) for kind in job.input if kind != "inference"}
    for kind, paths in files.items():
        if len(paths) != len(configs):
            raise ValueError(f"{len(paths)} {kind} inputs for {len(configs)} experiments")
    results, reports, start = {}, {}, 0
    for index, (name, config) in enumerate(configs.items()):
        count = 2 * len(config["inference"]["backends"])
        inputs = {kind: str(paths[index]) for kind, paths in files.items() if kind != "report"}
        inputs["inference"] = [str(path) for path in inference[start : start + count]]
        start += count
        results[name] = load_results(inputs, config)
        reports[name] = files["report"][index]
    if start != len(inference):
        raise ValueError(f"{len(inference)} inference inputs, the configs name {start}")
    return configs, results, reports


def build(configs: dict[str, dict], results: dict[str, Results]) -> pd.DataFrame:
    """experiments.csv's table: one row per experiment and backend."""
    settings = changed_settings(configs)
    rows = [
        {"experiment": name, **settings[name], **row}
        for name in configs
        for row in experiment_rows(name, configs[name], results[name])
    ]
    columns = ["experiment", *next(iter(settings.values()), {}), *COLUMNS]
    return pd.DataFrame(rows, columns=columns)


def context(
    table: pd.DataFrame, configs: dict[str, dict], links: dict[str, str], generated_at: str
) -> dict[str, Any]:
    settings = changed_settings(configs)
    setting_keys = list(next(iter(settings.values()), {}))
    slopes = fitted_slopes(table)
    backends = list(dict.fromkeys(table["backend"]))
    experiments = []
    for name in configs:
        own = table[table["experiment"] == name]
        first = own.iloc[0] if len(own) else None
        timed = own.dropna(subset=["latency_median_s"])
        fastest = timed.loc[timed["latency_median_s"].idxmin()] if len(timed) else None
        experiments.append(
            {
                "name": name,
                "link": links[name],
                "settings": [settings[name][key] for key in setting_keys],
                "parameters": fmt.integer(first["parameters"]) if first is not None else "–",
                "macs": fmt.count(first["macs"]) if first is not None else "–",
                "accuracy_torch": fmt.percent(first["test_accuracy_torch"])
                if first is not None
                else "–",
                "accuracy_numpy": fmt.percent(first["test_accuracy_numpy"])
                if first is not None
                else "–",
                "agreement": _verdict(first, "agreement"),
                "gradcheck": _verdict(first, "gradcheck"),
                "fastest": fastest["backend"] if fastest is not None else "–",
                "backends": {
                    row.backend: {
                        "latency": fmt.duration(row.latency_median_s),
                        "rate": fmt.rate(row.throughput_images_per_s),
                        "batch": fmt.integer(row.throughput_batch_size),
                    }
                    for row in own.itertuples(index=False)
                },
            }
        )
    timed = table.dropna(subset=["latency_median_s"])
    fastest_rows = timed.loc[timed.groupby("experiment", sort=False)["latency_median_s"].idxmin()]
    return {
        "generated_at": generated_at,
        "setting_keys": setting_keys,
        "backends": [{"name": name, "peer": name in PEERS} for name in backends],
        "experiments": experiments,
        "slopes": [
            {"backend": name, "slope": "–" if slopes.get(name) is None else f"{slopes[name]:.2f}"}
            for name in backends
        ],
        "latency_figure": figures.latency_against_macs(
            timed.rename(columns={"latency_median_s": "latency_s"}), slopes
        )
        if len(timed)
        else None,
        "accuracy_figure": figures.accuracy_against_latency(
            fastest_rows.rename(
                columns={"latency_median_s": "latency_s", "test_accuracy_torch": "accuracy"}
            ).dropna(subset=["accuracy"])
        )
        if len(fastest_rows) and fastest_rows["test_accuracy_torch"].notna().any()
        else None,
    }


def _verdict(row, column: str) -> dict[str, str]:
    status = row[column] if row is not None else NA
    text = {PASS: "pass", FAIL: "fail"}.get(status, status)
    return badge(status, text)


def render(context: dict[str, Any]) -> str:
    return template("comparison.html.j2").render(**context)


def run(job: Job) -> None:
    configs, results, reports = load(job)
    table = build(configs, results)
    html, csv = job.path("output", "html"), job.path("output", "csv")
    links = {name: os.path.relpath(path, html.parent) for name, path in reports.items()}
    generated_at = _dt.datetime.now().astimezone().strftime("%Y-%m-%d %H:%M %Z")
    page = render(context(table, configs, links, generated_at))
    write_table(table, csv)
    with atomic_output(html) as temporary:
        temporary.write_text(page, encoding="utf-8")
    print(f"wrote {html} and {csv}: {len(configs)} experiments, {len(table)} rows")


if __name__ == "__main__":
    run_job(run)
