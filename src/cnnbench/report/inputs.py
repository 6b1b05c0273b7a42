"""Read the pipeline's result tables (docs/CONTRACT.md) for the report, tolerating what is absent.

Nothing here runs a model. Every file is optional: a missing or unreadable one becomes a note the
report shows, so a partial run (a subset of backends, ``inference.limit`` < 10000, a failed rule)
still renders and says what it could not find.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import yaml

from cnnbench.data import read_idx
from cnnbench.tables import PREDICTION_COLUMNS as INFERENCE_COLUMNS

BENCHMARK_COLUMNS = [
    "s",
    "h:m:s",
    "max_rss",
    "max_vms",
    "max_uss",
    "max_pss",
    "io_in",
    "io_out",
    "mean_load",
    "cpu_time",
]
REFERENCE_BACKEND = "torch"


@dataclass
class Backend:
    name: str
    table: pd.DataFrame | None = None  # inference/<backend>.csv, sorted by index
    meta: dict[str, Any] = field(default_factory=dict)  # inference/<backend>.json

    @property
    def present(self) -> bool:
        return self.table is not None and len(self.table) > 0


@dataclass
class Results:
    root: Path
    config_path: Path | None
    config: dict[str, Any]
    config_text: str
    manifest: dict[str, Any]
    metrics: pd.DataFrame | None
    gradcheck: pd.DataFrame | None
    backends: list[Backend]
    throughput: pd.DataFrame | None
    agreement: pd.DataFrame | None
    accuracy: pd.DataFrame | None
    disagreements: pd.DataFrame | None
    environment: dict[str, Any]
    benchmarks: pd.DataFrame | None
    test_images: np.ndarray | None
    test_images_path: Path | None
    worked_example_torch: dict[str, Any] | None
    notes: list[str] = field(default_factory=list)  # problems found while reading, shown on top

    @property
    def present_backends(self) -> list[Backend]:
        return [backend for backend in self.backends if backend.present]

    def backend(self, name: str) -> Backend | None:
        return next((b for b in self.backends if b.name == name and b.present), None)

    @property
    def reference(self) -> Backend | None:
        """torch when it ran; otherwise the first backend that did (the report says which)."""
        return self.backend(REFERENCE_BACKEND) or next(iter(self.present_backends), None)


def load_results(
    results_dir: str | Path, config: str | Path | dict[str, Any] | None = None
) -> Results:
    """Everything under ``results_dir``; ``config`` is the config file's path or the config itself.

    A dict is the run's effective config (what Snakemake passes, command-line overrides included).
    """
    root = Path(results_dir)
    notes: list[str] = []

    config_path = None
    if isinstance(config, dict):
        config_text = yaml.safe_dump(config, sort_keys=False, default_flow_style=None, width=100)
    elif config is not None:
        config_path = Path(config)
        config, config_text = {}, ""
        try:
            config_text = config_path.read_text()
            config = yaml.safe_load(config_text) or {}
        except (OSError, yaml.YAMLError) as error:
            notes.append(f"config {config_path}: cannot read ({error})")
    else:
        config, config_text = {}, ""
        notes.append("no config given; backends and data files are taken from what is on disk")

    manifest = _json(root / "model" / "manifest.json", notes)
    metrics = _csv(root / "training" / "metrics.csv", notes)
    gradcheck = _csv(root / "gradcheck.csv", notes)
    if gradcheck is not None and "passed" in gradcheck:
        gradcheck["passed"] = gradcheck["passed"].map(_truthy)

    names = list(_get(config, "inference", "backends", default=[]) or [])
    if not names:  # no config: report whatever ran
        names = sorted(p.stem for p in (root / "inference").glob("*.csv"))
        if names:
            notes.append("no inference.backends in the config; showing every inference/*.csv found")
    backends = [_load_backend(root, name, notes) for name in names]

    throughput = _csv(root / "throughput.csv", notes)
    agreement = _csv(root / "agreement.csv", notes, empty_ok=len(names) < 2)
    accuracy = _csv(root / "accuracy.csv", notes)
    disagreements = _csv(root / "disagreements.csv", notes, empty_ok=True)
    environment = _json(root / "environment.json", notes)
    benchmarks = _benchmarks(root / "benchmarks", notes)

    images, images_path = None, None
    test_file = _get(config, "dataset", "files", "test_images", "file")
    if test_file:
        images_path = root / "data" / test_file
        if images_path.is_file():
            try:
                images = read_idx(images_path)
                if images.ndim != 3:
                    notes.append(f"{images_path}: not an image file; thumbnails left out")
                    images = None
            except ValueError as error:
                notes.append(f"{images_path}: {error}; thumbnails left out")
        else:
            notes.append(f"{images_path} not found; thumbnails left out")

    worked = None
    worked_path = root / "worked_example_torch.json"
    if worked_path.is_file():
        worked = _json(worked_path, notes)

    return Results(
        root=root,
        config_path=config_path,
        config=config,
        config_text=config_text,
        manifest=manifest,
        metrics=metrics,
        gradcheck=gradcheck,
        backends=backends,
        throughput=throughput,
        agreement=agreement,
        accuracy=accuracy,
        disagreements=disagreements,
        environment=environment,
        benchmarks=benchmarks,
        test_images=images,
        test_images_path=images_path,
        worked_example_torch=worked or None,
        notes=notes,
    )


def _load_backend(root: Path, name: str, notes: list[str]) -> Backend:
    table = _csv(root / "inference" / f"{name}.csv", notes)
    meta = _json(root / "inference" / f"{name}.json", notes)
    if table is not None:
        missing = [c for c in INFERENCE_COLUMNS if c not in table]
        if missing:
            notes.append(f"inference/{name}.csv lacks columns {missing}; backend left out")
            table = None
        else:
            table = table.sort_values("index", kind="stable").reset_index(drop=True)
            if table["index"].duplicated().any():
                notes.append(f"inference/{name}.csv repeats image indices")
            if (
                "images" in meta
                and meta["images"] is not None
                and int(meta["images"]) != len(table)
            ):
                notes.append(
                    f"inference/{name}.json says {int(meta['images']):,} images, "
                    f"the csv holds {len(table):,} rows"
                )
    return Backend(name=name, table=table, meta=meta)


def _benchmarks(folder: Path, notes: list[str]) -> pd.DataFrame | None:
    rows = []
    for path in sorted(folder.glob("*.tsv")):
        try:
            table = pd.read_csv(path, sep="\t", na_values=["-", "NA"])
        except (OSError, ValueError) as error:
            notes.append(f"benchmarks/{path.name}: cannot read ({error})")
            continue
        if "s" not in table or table.empty:
            notes.append(f"benchmarks/{path.name}: no 's' column")
            continue
        row = {"name": path.stem, "repeats": len(table), "end": path.stat().st_mtime}
        if "rule_name" in table and pd.notna(table["rule_name"].iloc[0]):
            row["rule"] = str(table["rule_name"].iloc[0])
        for column in BENCHMARK_COLUMNS:
            if column in table and column != "h:m:s":
                row[column] = pd.to_numeric(table[column], errors="coerce").mean()
        rows.append(row)
    if not rows:
        return None
    frame = pd.DataFrame(rows)
    frame["start"] = frame["end"] - frame["s"]
    return frame.sort_values(["start", "name"]).reset_index(drop=True)


def _csv(path: Path, notes: list[str], empty_ok: bool = False) -> pd.DataFrame | None:
    if not path.is_file():
        notes.append(f"{_short(path)} not found")
        return None
    try:
        return pd.read_csv(path)
    except pd.errors.EmptyDataError:
        if not empty_ok:
            notes.append(f"{_short(path)} is empty")
        return None
    except (OSError, ValueError) as error:
        notes.append(f"{_short(path)}: cannot read ({error})")
        return None


def _json(path: Path, notes: list[str]) -> dict[str, Any]:
    if not path.is_file():
        notes.append(f"{_short(path)} not found")
        return {}
    try:
        value = json.loads(path.read_text())
    except (OSError, ValueError) as error:
        notes.append(f"{_short(path)}: cannot read ({error})")
        return {}
    return value if isinstance(value, dict) else {}


def _short(path: Path) -> str:
    parts = path.parts
    return "/".join(parts[-3:]) if len(parts) >= 3 else str(path)


def _truthy(value) -> bool:
    if isinstance(value, str):
        return value.strip().lower() in ("true", "1", "yes", "pass", "passed")
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return False
    return bool(value)


def _get(mapping, *keys, default=None):
    for key in keys:
        if not isinstance(mapping, dict) or key not in mapping:
            return default
        mapping = mapping[key]
    return mapping
