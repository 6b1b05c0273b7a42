"""results/report.html: one self-contained page built from the result tables; never runs a model.

    python -m cnnbench.report JOB

JOB (cnnbench.common.job) names every file the report reads and the page it writes:
{"input": {"metrics": ..., "manifest": ..., ...}, "output": {"html": "results/report.html"},
"settings": <the run's whole effective config>}; report.inputs lists the input names. Every
figure is an embedded PNG, the page makes no network request and has no script.
"""

from __future__ import annotations

import datetime as _dt
from pathlib import Path
from typing import Any

from cnnbench.common.files import atomic_output
from cnnbench.common.job import Job

from .build import build_context
from .common import template
from .inputs import Results, load_results

__all__ = ["build_report", "load_results", "render", "run"]


def render(results: Results, generated_at: str | None = None) -> str:
    """The report's HTML for ``results``."""
    if generated_at is None:
        generated_at = _dt.datetime.now().astimezone().strftime("%Y-%m-%d %H:%M %Z")
    return template("report.html.j2").render(**build_context(results, generated_at))


def build_report(inputs: dict[str, Any], config: dict[str, Any], out: str | Path) -> Path:
    """Read the named ``inputs`` with the run's ``config``; write the page to ``out`` atomically."""
    page = render(load_results(inputs, config))
    out = Path(out)
    with atomic_output(out) as temporary:
        temporary.write_text(page, encoding="utf-8")
    return out


def run(job: Job) -> None:
    path = build_report(job.input, job.settings, job.path("output", "html"))
    print(f"wrote {path} ({path.stat().st_size / 1e6:.1f} MB)")
