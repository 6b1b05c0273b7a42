"""Read the report rule's named inputs (docs/CONTRACT.md's result tables), tolerating what is absent.

The rule names every file the report reads (workflow/rules/report.smk), so this module never
guesses a path: it reads what it is given. Nothing here runs a model. A missing or unreadable file
becomes a note the report shows, so a partial set of inputs (library use, a failed step) still
renders and says what it could not find.

Named inputs: metrics, manifest, weights, data (the dataset files), gradcheck, inference (every
backend's csv and json), throughput, bench_processes (optional: the bench repeated in fresh
processes, results/bench_processes.json), machine (optional: this machine's measured limits,
results/machine.json), layers (optional: every backend's time per layer, results/layers.csv),
agreement, accuracy, disagreements, environment, benchmarks
(benchmark tsvs), worked_example (optional: PyTorch's result for the worked example).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import yaml

from cnnbench.backends import PEERS, REFERENCE
from cnnbench.common.tables import logit_columns_of, prediction_columns
from cnnbench.data import read_idx

# the numeric columns of a Snakemake benchmark file (h:m:s repeats s)
BENCHMARK_COLUMNS = ["s", "max_rss", "max_vms", "max_uss", "max_pss"]
BENCHMARK_COLUMNS += ["io_in", "io_out", "mean_load", "cpu_time"]
# with --benchmark-extended (the default profile) also the threads each job declared
BENCHMARK_COLUMNS += ["threads"]


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
    config: dict[str, Any]
    config_text: str
    manifest: dict[str, Any]
    weights_path: Path | None
    data_paths: dict[str, Path]  # file name -> path, as given
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
    worked_example_torch: dict[str, Any] | None
    notes: list[str] = field(default_factory=list)  # problems found while reading, shown on top
    # Training in NumPy (results/training_numpy/): optional, the section is left out without them
    training_numpy_metrics: pd.DataFrame | None = None
    training_numpy_steps: pd.DataFrame | None = None
    training_numpy_summary: dict[str, Any] = field(default_factory=dict)
    # The bench in fresh processes (results/bench_processes.json): optional, no variance without it
    bench_processes: dict[str, Any] = field(default_factory=dict)
    # This machine's limits (results/machine.json): optional, no roofs without it
    machine: dict[str, Any] = field(default_factory=dict)
    # Every backend's time per layer (results/layers.csv): optional, no per-layer part without it
    layers: pd.DataFrame | None = None

    @property
    def present_backends(self) -> list[Backend]:
        return [backend for backend in self.backends if backend.present]

    def backend(self, name: str) -> Backend | None:
        return next((b for b in self.backends if b.name == name and b.present), None)

    @property
    def peer(self) -> Backend | None:
        """The production peer (``backends.PEERS``, onnxruntime) the speeds are measured against,
        if its results exist; the first in the config's order if there were several."""
        return next((b for b in self.present_backends if b.name in PEERS), None)

    @property
    def reference(self) -> Backend | None:
        """The reference backend (torch; the config schema requires it), if its results exist."""
        return self.backend(REFERENCE)


def load_results(inputs: dict[str, Any], config: dict[str, Any]) -> Results:
    """The named input files (a path or a list of paths each) and the run's effective config."""
    notes: list[str] = []
    if not config:
        notes.append("no config given; backends are taken from the inference inputs")
    config_text = (
        yaml.safe_dump(config, sort_keys=False, default_flow_style=None, width=100)
        if config
        else ""
    )
    reader = _Reader(inputs, notes)
    backends = _load_backends(reader, nested(config, "inference", "backends", default=[]) or [])
    data_paths = {path.name: path for path in reader.paths("data")}
    weights = reader.paths("weights")
    worked = reader.paths("worked_example", quiet=True)
    numpy_metrics = reader.paths("training_numpy_metrics", quiet=True)
    numpy_steps = reader.paths("training_numpy_steps", quiet=True)
    numpy_summary = reader.paths("training_numpy_summary", quiet=True)
    bench_processes = reader.paths("bench_processes", quiet=True)
    machine = reader.paths("machine", quiet=True)
    layers = reader.paths("layers", quiet=True)
    return Results(
        config=config or {},
        config_text=config_text,
        manifest=reader.json("manifest"),
        weights_path=weights[0] if weights else None,
        data_paths=data_paths,
        metrics=reader.csv("metrics"),
        gradcheck=reader.csv("gradcheck"),
        backends=backends,
        throughput=reader.csv("throughput"),
        agreement=reader.csv("agreement", empty_ok=len(backends) < 2),
        accuracy=reader.csv("accuracy"),
        disagreements=reader.csv("disagreements", empty_ok=True),
        environment=reader.json("environment"),
        benchmarks=_benchmarks(reader.paths("benchmarks"), notes),
        test_images=_test_images(config, data_paths, notes),
        worked_example_torch=(_json(worked[0], notes) or None) if worked else None,
        notes=notes,
        training_numpy_metrics=_csv(numpy_metrics[0], notes) if numpy_metrics else None,
        training_numpy_steps=_csv(numpy_steps[0], notes) if numpy_steps else None,
        training_numpy_summary=(_json(numpy_summary[0], notes) or {}) if numpy_summary else {},
        bench_processes=(_json(bench_processes[0], notes) or {}) if bench_processes else {},
        machine=(_json(machine[0], notes) or {}) if machine else {},
        layers=_csv(layers[0], notes, empty_ok=True) if layers else None,
    )


class _Reader:
    """Named inputs -> paths and tables; every absent name or file adds a note."""

    def __init__(self, inputs: dict[str, Any], notes: list[str]):
        self.inputs, self.notes = inputs, notes

    def paths(self, name: str, quiet: bool = False) -> list[Path]:
        value = self.inputs.get(name)
        if value is None:
            if not quiet:
                self.notes.append(f"no {name} input given")
            return []
        return [Path(item) for item in ([value] if isinstance(value, str | Path) else value)]

    def csv(self, name: str, empty_ok: bool = False) -> pd.DataFrame | None:
        paths = self.paths(name)
        return _csv(paths[0], self.notes, empty_ok) if paths else None

    def json(self, name: str) -> dict[str, Any]:
        paths = self.paths(name)
        return _json(paths[0], self.notes) if paths else {}


def _load_backends(reader: _Reader, names: list[str]) -> list[Backend]:
    files = {(path.stem, path.suffix): path for path in reader.paths("inference")}
    if not names:  # no config: report every backend given
        names = list(dict.fromkeys(stem for stem, suffix in files if suffix == ".csv"))
    backends = []
    for name in names:
        csv, meta = files.get((name, ".csv")), files.get((name, ".json"))
        if csv is None or meta is None:
            reader.notes.append(f"inference/{name}.csv or .json is not among the inputs")
        backends.append(
            _backend(
                name,
                _csv(csv, reader.notes) if csv else None,
                _json(meta, reader.notes) if meta else {},
                reader.notes,
            )
        )
    return backends


def _backend(
    name: str, table: pd.DataFrame | None, meta: dict[str, Any], notes: list[str]
) -> Backend:
    if table is not None:
        expected = prediction_columns(max(2, len(logit_columns_of(table))))
        missing = [c for c in expected if c not in table]
        if missing:
            notes.append(f"inference/{name}.csv lacks columns {missing}; backend left out")
            table = None
        else:
            table = table.sort_values("index", kind="stable").reset_index(drop=True)
            if table["index"].duplicated().any():
                notes.append(f"inference/{name}.csv repeats image indices")
            if meta.get("images") is not None and int(meta["images"]) != len(table):
                notes.append(
                    f"inference/{name}.json says {int(meta['images']):,} images, "
                    f"the csv holds {len(table):,} rows"
                )
    return Backend(name=name, table=table, meta=meta)


def _test_images(
    config: dict[str, Any], data_paths: dict[str, Path], notes: list[str]
) -> np.ndarray | None:
    name = nested(config, "dataset", "files", "test_images", "file")
    if not name:
        return None
    path = data_paths.get(name)
    if path is None or not path.is_file():
        notes.append(f"{path or name} not found; thumbnails left out")
        return None
    try:
        images = read_idx(path)
    except ValueError as error:
        notes.append(f"{path}: {error}; thumbnails left out")
        return None
    if images.ndim != 3:
        notes.append(f"{path}: not an image file; thumbnails left out")
        return None
    return images


def _benchmarks(paths: list[Path], notes: list[str]) -> pd.DataFrame | None:
    rows = []
    for path in paths:
        if not path.is_file():
            notes.append(f"benchmarks/{path.name} not found")
            continue
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
            if column in table:
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


def nested(mapping, *keys, default=None):
    for key in keys:
        if not isinstance(mapping, dict) or key not in mapping:
            return default
        mapping = mapping[key]
    return mapping
