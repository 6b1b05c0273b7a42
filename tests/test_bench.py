"""``python -m cnnbench.bench``: a benchmark to read, checked here only for what it prints."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def test_bench_across_processes(mnist_dir, weights_path, tmp_path):
    command = [sys.executable, "-m", "cnnbench.bench", "--weights", str(weights_path)]
    command += ["--test-images", str(mnist_dir / "t10k-images-idx3-ubyte.gz")]
    command += ["--test-labels", str(mnist_dir / "t10k-labels-idx1-ubyte.gz")]
    command += ["--backends", "numpy_im2col", "onnxruntime", "--images", "3"]
    command += ["--batch-size", "8", "--rounds", "1", "--processes", "2"]
    command += ["--json", str(tmp_path / "processes.json")]
    result = subprocess.run(
        command, capture_output=True, text=True, check=True, timeout=300, cwd=REPO
    )
    out = result.stdout
    assert out.count("=== process") == 2
    # 2 x 5,307,528 multiply-adds: conv 56448 + 903168 + 1179648, fc 512000 + 2500
    assert out.count("floor: 5.31 MFLOP per image") == 2
    assert re.search(r"onnxruntime \(peer\) +[\d.]+ us +1\.00x", out)
    assert "across 2 fresh processes" in out
    summary = out.split("across 2 fresh processes")[1]
    for title in ("batch 1 ", "batch 8 "):
        assert title in summary
    assert len(re.findall(r"^numpy_im2col +[\d.]+ +[\d.]+ +[\d.]+ us", summary, re.M)) == 2
    assert len(re.findall(r"^  numpy_im2col +[\d.]+x", summary, re.M)) == 2
    record = json.loads((tmp_path / "processes.json").read_text())
    assert record["processes"] == 2 and record["clock"] == "wall"
    assert len(record["per_process"]) == 2
    for medians in record["per_process"]:
        assert set(medians["latency"]) == set(medians["batch"]) == {"numpy_im2col", "onnxruntime"}
        assert medians["batches"] == {"numpy_im2col": 8, "onnxruntime": 8}
        assert all(0 < s < 0.1 for s in medians["latency"].values())
    # the summary printed is the one recorded
    first = record["per_process"][0]["latency"]["onnxruntime"] * 1e6
    assert f"{first:.1f} us" in out


def test_bench_across_processes_stops_at_a_failing_process_with_its_one_line_error(
    weights_path, tmp_path
):
    missing = tmp_path / "missing.gz"
    command = [sys.executable, "-m", "cnnbench.bench", "--weights", str(weights_path)]
    command += ["--test-images", str(missing), "--processes", "3", "--no-stages"]
    result = subprocess.run(command, capture_output=True, text=True, timeout=300, cwd=REPO)
    assert result.returncode == 2
    assert result.stdout.count("=== process") == 1
    assert result.stderr.strip().splitlines() == [
        f"python -m cnnbench.bench: error: {missing}: cannot read ([Errno 2] No such file or "
        f"directory: '{missing}')"
    ]
