"""The environment record: the conditions every timing was measured under."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np


def test_environment_record(tmp_path):
    """Run as the pipeline does, in its own process: thread settings are process-wide."""
    out = tmp_path / "environment.json"
    job = json.dumps({"output": {"json": str(out)}, "settings": {"threads": 1}})
    subprocess.run(
        [sys.executable, "-m", "cnnbench.steps.environment", job],
        check=True,
    )
    record = json.loads(out.read_text())
    for key in (
        "cpu_model",
        "logical_cores",
        "threads",
        "python",
        "packages",
        "blas",
        "numba_cpu",
        "load_average",
        "platform",
        "timestamp",
    ):
        assert record[key] not in (None, "", [], {}), key
    assert record["threads"] == record["torch_threads"] == record["numba_threads"] == 1
    assert record["packages"]["numpy"] == np.__version__
    assert {"torch", "numba", "llvmlite", "pandas", "snakemake"} <= set(record["packages"])
    blas = [lib for lib in record["blas"] if lib["user_api"] == "blas"]
    assert blas and all(lib["num_threads"] == 1 for lib in blas)
    numba_cpu = record["numba_cpu"]
    assert numba_cpu["name"] and "sse2" in numba_cpu["features"]
    assert numba_cpu["full_width_vectors"] == ("avx512f" in numba_cpu["features"])
    assert len(record["load_average"]) == 3
