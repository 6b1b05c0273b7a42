"""results/report.html: one self-contained page built from the result tables; never runs a model.

    python -m cnnbench.report --results results --config config.yaml --out results/report.html
    python -m cnnbench.report --results results --config-json '{"dataset": ...}' --out ...

Every figure is an embedded PNG, the page makes no network request and has no script.
"""

from __future__ import annotations

import argparse
import datetime as _dt
import json
from pathlib import Path

import jinja2

from cnnbench.files import atomic_output

from .build import build_context
from .inputs import Results, load_results

__all__ = ["build_report", "load_results", "main", "render"]


def render(results: Results, generated_at: str | None = None) -> str:
    """The report's HTML for ``results``."""
    if generated_at is None:
        generated_at = _dt.datetime.now().astimezone().strftime("%Y-%m-%d %H:%M %Z")
    environment = jinja2.Environment(
        loader=jinja2.PackageLoader("cnnbench", "templates"),
        autoescape=True,
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    template = environment.get_template("report.html.j2")
    return template.render(**build_context(results, generated_at))


def build_report(
    results_dir: str | Path, config: str | Path | dict | None, out: str | Path
) -> Path:
    """Read ``results_dir`` and the config (a path, or the config itself), write ``out`` atomically."""
    page = render(load_results(results_dir, config))
    out = Path(out)
    with atomic_output(out) as temporary:
        temporary.write_text(page, encoding="utf-8")
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m cnnbench.report", description=__doc__.splitlines()[0]
    )
    parser.add_argument("--results", default="results", help="results folder (default: results)")
    source = parser.add_mutually_exclusive_group()
    source.add_argument("--config", default=None, help="the config.yaml the run used")
    source.add_argument(
        "--config-json", default=None, help="the run's effective config as one JSON string"
    )
    parser.add_argument("--out", default=None, help="output file (default: <results>/report.html)")
    args = parser.parse_args(argv)
    config = json.loads(args.config_json) if args.config_json else args.config
    if args.config_json and not isinstance(config, dict):
        parser.error("--config-json must be a JSON object")
    out = Path(args.out) if args.out else Path(args.results) / "report.html"
    path = build_report(args.results, config, out)
    print(f"wrote {path} ({path.stat().st_size / 1e6:.1f} MB)")
    return 0
