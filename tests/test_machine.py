"""This machine's limits (cnnbench.bench.machine, step machine): kernels, caches, roofs."""

from __future__ import annotations

import itertools
import json
import subprocess
import sys

import numpy as np
import pytest

from cnnbench.bench import machine


def test_caches_from_sysfs(tmp_path):
    """Data and unified caches, smallest level first; instruction caches and unreadable
    entries are left out."""
    for index, (level, kind, size) in enumerate(
        [
            (1, "Data", "48K"),
            (1, "Instruction", "32K"),
            (3, "Unified", "32768K"),
            (2, "Unified", "2M"),
        ]
    ):
        folder = tmp_path / f"index{index}"
        folder.mkdir()
        (folder / "level").write_text(f"{level}\n")
        (folder / "type").write_text(f"{kind}\n")
        (folder / "size").write_text(f"{size}\n")
    (tmp_path / "index9").mkdir()  # no files: skipped
    assert machine.caches(tmp_path) == [
        {"level": 1, "type": "Data", "bytes": 48 * 1024},
        {"level": 2, "type": "Unified", "bytes": 2 * 1024**2},
        {"level": 3, "type": "Unified", "bytes": 32 * 1024**2},
    ]
    assert machine.caches(tmp_path / "absent") == []


def test_footprints_double_from_l1_to_four_times_the_last_level():
    sizes = machine.footprints(1024**2)
    assert sizes[0] == machine.SMALLEST_BYTES
    assert all(b == 2 * a for a, b in itertools.pairwise(sizes))
    assert sizes[-1] == 4 * 1024**2 and sizes[-2] < 4 * 1024**2


def _clocked(call_seconds: float):
    """A fake clock and a function each call of which advances it by ``call_seconds``."""
    now = [0.0]
    calls = []

    def function():
        calls.append(1)
        now[0] += call_seconds

    return function, (lambda: now[0]), calls


@pytest.mark.parametrize(
    ("call_seconds", "budget", "timed_calls"),
    [
        (0.001, None, 100),  # no budget: every round
        (0.001, 0.5, 100),  # short calls: the budget holds all 100
        (0.02, 0.5, 25),  # 25 calls fill the budget
        (0.13, 0.5, machine.MIN_ROUNDS),  # a 2 GiB triad: the minimum, not 3 of them per budget
    ],
)
def test_best_seconds_takes_fewer_rounds_of_long_calls(call_seconds, budget, timed_calls):
    function, clock, calls = _clocked(call_seconds)
    best = machine.best_seconds(function, 100, clock, budget=budget)
    assert len(calls) == 1 + timed_calls  # one untimed call first
    assert best == pytest.approx(call_seconds)


def test_roofs_take_the_best_rate_that_fits_each_level():
    caches = [{"level": 1, "bytes": 32}, {"level": 2, "bytes": 128}, {"level": 3, "bytes": 512}]
    bandwidth = [
        {"bytes": size, "gb_per_s": rate}
        for size, rate in [
            (16, 90),
            (32, 100),
            (64, 60),
            (128, 70),
            (256, 40),
            (512, 50),
            (1024, 12),
            (2048, 10),
        ]
    ]
    assert machine.roofs(caches, bandwidth) == {"L1": 100, "L2": 70, "L3": 50, "memory": 12}
    # no cache information: one roof, the slowest rate measured
    assert machine.roofs([], bandwidth) == {"memory": 10}


def test_kernels_compute_what_they_count():
    """The triad writes b + (s + r) * c on its last pass r; the dot product sums a * b per pass:
    the bytes and FLOPs counted are work really done."""
    dot, triad = machine._kernels()
    rng = np.random.default_rng(3)
    a, b, c = (rng.random(1000, dtype=np.float32) for _ in range(3))
    triad(a, b, c, np.float32(0.5), 3)
    np.testing.assert_allclose(a, b + np.float32(2.5) * c, rtol=1e-6)
    x, y = rng.random(256), rng.random(256)
    assert dot(x, y, 4) == pytest.approx(4 * float(x @ y), rel=1e-9)


def test_step_records_the_limits_with_the_environment(tmp_path):
    """Run as the pipeline does, in its own process (one thread, process-wide)."""
    out = tmp_path / "machine.json"
    job = json.dumps({"output": {"json": str(out)}, "settings": {}})
    subprocess.run([sys.executable, "-m", "cnnbench.steps.machine", job], check=True, timeout=300)
    limits = json.loads(out.read_text())
    assert limits["threads"] == 1 and limits["environment"]["threads"] == 1
    assert limits["environment"]["cpu_model"] and limits["environment"]["blas"]
    rates = [limits[key]["gflops"] for key in ("matmul", "onnxruntime_matmul", "numba_dot")]
    assert all(0 < rate < 10_000 for rate in rates)
    assert limits["peak_gflops"] == max(rates)
    sizes = [row["bytes"] for row in limits["bandwidth"]]
    assert sizes == sorted(sizes) and sizes[0] <= 32 * 1024
    last_level = limits["caches"][-1]["bytes"] if limits["caches"] else 32 * 1024**2
    assert sizes[-1] >= 2 * last_level
    assert all(0 < row["gb_per_s"] < 10_000 for row in limits["bandwidth"])
    assert limits["roofs"] == machine.roofs(limits["caches"], limits["bandwidth"])
    assert len(limits["load_average"]) == 2
