"""cnnbench.common.sources: the files a step runs, found statically, against what Python imports."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from cnnbench.backends import NAMES, module_name
from cnnbench.common.sources import ROOT, source_files


def relative(files) -> set[str]:
    return {str(path.relative_to(ROOT)) for path in files}


def imported_files(*modules: str) -> set[str]:
    """The files of this package Python really loads to import ``modules``, in a fresh process."""
    code = (
        "import importlib, json, sys\n"
        f"for name in {list(modules)!r}: importlib.import_module(name)\n"
        "print(json.dumps([m.__file__ for n, m in sys.modules.items()"
        " if n.split('.')[0] == 'cnnbench' and getattr(m, '__file__', None)]))"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=300
    )
    return relative(map(Path, json.loads(result.stdout)))


@pytest.mark.parametrize(
    "modules",
    [
        ["cnnbench.steps.train"],
        ["cnnbench.steps.gradcheck"],
        ["cnnbench.steps.infer", *(module_name(name) for name in NAMES)],
        ["cnnbench.steps.bench_processes"],
        ["cnnbench.report"],  # (importing its __main__ would run it)
    ],
)
def test_every_module_python_imports_is_found(modules):
    """Static imports are a superset of what importing the step loads (lazy ones come later)."""
    found = relative(source_files(*modules))
    assert imported_files(*modules) <= found


def test_what_a_step_runs_and_what_it_does_not():
    train = relative(source_files("cnnbench.steps.train"))
    # the module, what it imports from other packages, and the packages around them
    assert {"steps/train.py", "training/seeding.py", "data.py", "common/job.py"} <= train
    assert {"__init__.py", "steps/__init__.py", "training/__init__.py"} <= train
    # training is PyTorch's: no NumPy layers, backends, report, or other steps
    assert not {path for path in train if path.startswith(("ops/", "backends/", "report/"))}
    assert "steps/infer.py" not in train

    loops = relative(source_files("cnnbench.steps.infer", module_name("numpy_loops")))
    assert {"backends/numpy_loops.py", "ops/loops.py", "ops/__init__.py"} <= loops
    assert "backends/numba_loops.py" not in loops


def test_relative_imports_and_templates_of_the_report():
    report = relative(source_files("cnnbench.report.__main__"))
    # report/__main__.py imports `from . import run`; build.py imports its sections relatively
    assert {"report/__init__.py", "report/build.py", "report/sections/summary.py"} <= report
    # loaded with jinja2.PackageLoader("cnnbench", "templates")
    assert "templates/report.html.j2" in report
    assert not any("__pycache__" in path for path in report)


def test_benchmarks_outside_the_pipeline_are_nobody_s_source():
    steps = [f"cnnbench.steps.{path.stem}" for path in (ROOT / "steps").glob("[!_]*.py")]
    used = relative(source_files(*steps, "cnnbench.report.__main__"))
    assert "bench/ops.py" not in used and "bench/training.py" not in used
    assert "bench/__main__.py" in used  # bench_processes runs it


def test_a_name_outside_the_package_is_refused():
    with pytest.raises(ValueError, match="numpy is not a module of cnnbench"):
        source_files("numpy")
    with pytest.raises(ValueError, match=r"cnnbench\.steps\.nothing is not a module"):
        source_files("cnnbench.steps.nothing")
