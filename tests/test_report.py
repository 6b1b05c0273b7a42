"""The report from small synthetic result tables: content, numbers, robustness. No training, fast."""

from __future__ import annotations

import html
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from synthetic_results import (
    ALL_BACKENDS,
    BENCH_BATCH,
    BENCH_LATENCY,
    DISAGREE_INDEX,
    LAYER_SUM,
    named_inputs,
    write_layers,
    write_synthetic_results,
)

from cnnbench.network.architecture import build
from cnnbench.report import build_report, fmt, load_results, render
from cnnbench.report.sections import provenance
from cnnbench.report.sections import worked_example as worked
from cnnbench.steps import worked_example

# ---------------------------------------------------------------------------- helpers


def _row(page: str, table_id: str, backend: str) -> list[str]:
    table = re.search(rf'<table[^>]*id="{table_id}".*?</table>', page, re.S).group(0)
    row = re.search(rf'<tr[^>]*data-backend="{backend}"[^>]*>(.*?)</tr>', table, re.S).group(1)
    return [
        re.sub(r"<[^>]+>", "", cell).strip()
        for cell in re.findall(r"<td[^>]*>(.*?)</td>", row, re.S)
    ]


def _section(page: str, section_id: str) -> str:
    return re.search(rf'<section id="{section_id}">(.*?)</section>', page, re.S).group(1)


@pytest.fixture(scope="module")
def full_report(tmp_path_factory):
    root = tmp_path_factory.mktemp("report")
    write_synthetic_results(root)
    out = build_report(*named_inputs(root), root / "results" / "report.html")
    return root, out.read_text(encoding="utf-8")


# ---------------------------------------------------------------------------- content


def test_every_section_and_toc_entry_present(full_report):
    _, page = full_report
    for section_id, title in [
        ("summary", "1. Summary"),
        ("training", "2. Training"),
        ("timing", "3. Timing"),
        ("where", "4. Where the time goes"),
        ("agreement", "5. Agreement"),
        ("gradients", "6. Gradient checks"),
        ("worked-example", "7. Worked example"),
        ("provenance", "8. Provenance"),
    ]:
        assert f'<section id="{section_id}">' in page
        assert f'<a href="#{section_id}">' in page
        assert f"<h2>{title}</h2>" in page


def test_training_in_numpy(full_report):
    _, page = full_report
    training = _section(page, "training")
    assert '<h3 id="training-numpy">Training in NumPy</h3>' in training
    text = re.sub(r"<[^>]+>", "", training)
    assert "first 20 steps" in text and "at most 3.0e-12" in text and "passed" in text
    assert "97.95 %" in text and "0.04 percentage points" in text
    assert "9,961 of 10,000" in text and "99.61 %" in text
    assert training.count("<img") == 3  # PyTorch curves, both overlaid, per-step divergence
    rows = re.findall(r"<tr>(.*?)</tr>", training.split('id="training-numpy-table"')[1], re.S)
    assert len(rows) == 4 and all("1.10×" in row for row in rows[1:])  # header + 3 epochs
    # the NumPy run's threads are its own (1 here), the PyTorch run's train.threads (2)
    assert "train_numpy.threads = 1" in text and "train.threads = 2" in text
    assert "The thread counts differ" in text
    assert "trained on" in text and "cuda (NVIDIA H200)" in text  # the device auto picked


def test_summary_numbers_match_the_tables(full_report):
    root, page = full_report
    results = root / "results"
    accuracy = pd.read_csv(results / "accuracy.csv").set_index("backend")
    torch_median = pd.read_csv(results / "inference" / "torch.csv")["latency_s"].median()
    peer_median = pd.read_csv(results / "inference" / "onnxruntime.csv")["latency_s"].median()
    for backend in ALL_BACKENDS:
        latency = pd.read_csv(results / "inference" / f"{backend}.csv")["latency_s"]
        cells = _row(page, "summary-table", backend)
        peer = backend == "onnxruntime"
        assert cells[0] == backend + ("peer" if peer else "")  # the peer's tag, never another's
        assert cells[1] == "200"
        assert cells[2] == fmt.percent(accuracy.loc[backend, "accuracy"])
        assert cells[5] == fmt.duration(latency.median())
        assert cells[8] == fmt.duration(latency.sum())
        if backend != "torch":
            assert cells[6] == fmt.speedup(torch_median, latency.median())
        # the speed bar: the median as a multiple of the production peer's, with an interval
        timing = _row(page, "timing-table", backend)
        assert timing[7] == cells[7]
        if peer:
            assert cells[7] == "peer"
        else:
            ratio = latency.median() / peer_median
            shown = re.fullmatch(r"(\S+)× \[(\S+)–(\S+)\]", cells[7])
            assert shown and shown.group(1) == fmt.sig(ratio), cells[7]
            low, high = (float(shown.group(k).replace(",", "")) for k in (2, 3))
            assert low < ratio < high and high / low < 1.2, cells[7]
        # MLPerf's single-stream percentiles beside the mean
        assert timing[1] == fmt.duration(latency.median())
        assert timing[2] == fmt.duration(np.percentile(latency, 90))
        assert timing[3] == fmt.duration(latency.mean())
        q1, q3 = np.percentile(latency, [25, 75])
        assert timing[4] == fmt.share((q3 - q1) / latency.median())
    assert "slower" in _row(page, "summary-table", "numpy_loops")[6]
    assert _row(page, "summary-table", "numpy_loops")[3].startswith("199 / 200")
    # timing table: the numba compile time
    assert _row(page, "timing-table", "numba_loops")[9] == "2.34 s"
    assert _row(page, "timing-table", "torch")[9] == "none"
    assert 'id="fact-accuracy">97.91 %<' in page
    assert "the first 200 of 250 test images" in page


def test_peer_is_labelled_and_not_counted_as_hand_written(full_report):
    root, page = full_report
    results = root / "results"
    medians = {
        name: pd.read_csv(results / "inference" / f"{name}.csv")["latency_s"].median()
        for name in ALL_BACKENDS
    }
    # the peer is the fastest of all (synthetic 100 us), then torch (210 us), neither hand-written:
    # the fastest hand-written one is numba_loops (750 us)
    assert sorted(medians, key=medians.get)[:3] == ["onnxruntime", "torch", "numba_loops"]
    hand_written = "numba_loops"
    fastest = re.search(r'id="fact-fastest">(.*?)</div></div>', page, re.S).group(1)
    assert "Fastest hand-written backend" in fastest
    assert f'class="value">{hand_written}<' in fastest
    ratio = fmt.sig(medians[hand_written] / medians["onnxruntime"])
    assert re.search(
        rf"{fmt.duration(medians[hand_written])} per image, {ratio}× \[\S+–\S+\] the time of "
        "onnxruntime",
        fastest,
    )
    peer = re.search(r'id="fact-peer">(.*?)</div></div>', page, re.S).group(1)
    assert 'class="value">onnxruntime<' in peer
    assert f"{fmt.duration(medians['onnxruntime'])} per image" in peer
    # exactly one backend carries the peer tag in each backend table
    for table_id in ("summary-table", "timing-table", "throughput-table", "variance-table"):
        table = re.search(rf'<table[^>]*id="{table_id}".*?</table>', page, re.S).group(0)
        tagged = re.findall(
            r'data-backend="([^"]+)"><td><strong>[^<]*</strong><span class="tag peer">', table
        )
        assert tagged == ["onnxruntime"], table_id
    # throughput: time per image against the peer's at each batch size
    throughput = pd.read_csv(results / "throughput.csv").set_index(["backend", "batch_size"])
    cells = _row(page, "throughput-table", "numpy_im2col")
    for cell, size in zip(cells[1:], (1, 32, 1000), strict=True):
        peer_rate = throughput.loc[("onnxruntime", size), "images_per_s"]
        own_rate = throughput.loc[("numpy_im2col", size), "images_per_s"]
        assert cell.endswith(f"{fmt.sig(peer_rate / own_rate)}× the time of onnxruntime")


def test_variance_between_processes(full_report):
    _, page = full_report
    timing = _section(page, "timing")
    sentence = re.search(r'<p id="variance-sentence">(.*?)</p>', timing, re.S).group(1)
    # numba_loops: 150, 270, 200 us -> 150 us-270 us, spread (270 - 150) / 200 = 60 %
    assert sentence == (
        "Between 3 fresh processes, the batch-1 median of numba_loops ranged 150 µs–270 µs: "
        "a spread of 60 % of its median (200 µs)."
    )
    for name in ALL_BACKENDS:
        cells = _row(page, "variance-table", name)
        for offset, values in ((1, BENCH_LATENCY[name]), (4, BENCH_BATCH[name])):
            low, mid, high = min(values), float(np.median(values)), max(values)
            assert cells[offset] == f"{fmt.duration(low)} – {fmt.duration(high)}"
            assert cells[offset + 1] == fmt.duration(mid)
            flag = " unstable" if (high - low) / mid > 0.10 else ""
            assert cells[offset + 2] == f"{100 * (high - low) / mid:.0f} %{flag}"
    assert _row(page, "variance-table", "onnxruntime")[3] == "3 %"  # 73-75 us around 74 us
    assert "ran 3 times, each in a fresh process" in timing


def test_unstable_backends_are_flagged(full_report, tmp_path):
    """IQR / median above 10 % within the run, or a median moving more than 10 % between fresh
    processes, flags a backend unstable, with the reasons; the others read stable."""
    root, page = full_report
    results = root / "results"
    for name in ALL_BACKENDS:
        latency = pd.read_csv(results / "inference" / f"{name}.csv")["latency_s"]
        q1, q3 = np.percentile(latency, [25, 75])
        iqr = (q3 - q1) / latency.median()
        moved = {
            key: (max(v[name]) - min(v[name])) / np.median(v[name])
            for key, v in (("batch-1", BENCH_LATENCY), ("large-batch", BENCH_BATCH))
        }
        cell = _row(page, "timing-table", name)[5]
        expected = [f"IQR {fmt.share(iqr)} of its median"] if iqr > 0.10 else []
        expected += [
            f"{key} median moved {100 * spread:.0f} % between processes"
            for key, spread in moved.items()
            if spread > 0.10
        ]
        assert cell == ("".join(["unstable", *expected]) if expected else "stable"), name
    assert _row(page, "timing-table", "numba_loops")[5].startswith("unstable")  # 34 %, 60 %, 13 %
    assert _row(page, "timing-table", "torch")[5] == "stable"  # 3 %, 9.5 %, 9.5 %
    # a median that moves 20 % in one of the processes alone is enough
    write_synthetic_results(tmp_path)
    bench = json.loads((tmp_path / "results" / "bench_processes.json").read_text())
    bench["per_process"][1]["latency"]["torch"] *= 1.2
    (tmp_path / "results" / "bench_processes.json").write_text(json.dumps(bench))
    moved = [run["latency"]["torch"] for run in bench["per_process"]]
    spread = (max(moved) - min(moved)) / np.median(moved)
    torch = _row(render(load_results(*named_inputs(tmp_path))), "timing-table", "torch")[5]
    assert torch == f"unstablebatch-1 median moved {100 * spread:.0f} % between processes"


def test_median_ratio_interval_covers_the_true_ratio():
    """The 95 % bootstrap interval of a ratio of medians covers the true ratio in about 95 % of
    repeated experiments (lognormal latencies: medians 1.0 and 1.5), and is seeded."""
    from cnnbench.report.common import median_ratio

    rng = np.random.default_rng(12)
    covered = 0
    trials = 100
    for _ in range(trials):
        own = 1.5 * rng.lognormal(0, 0.2, 300)
        peer = rng.lognormal(0, 0.1, 200)
        ratio, low, high = median_ratio(own, peer)
        assert low < ratio < high
        covered += low <= 1.5 <= high
    assert 0.88 <= covered / trials <= 0.995, covered
    assert median_ratio(own, peer) == median_ratio(own.copy(), peer.copy())


def test_machine_limits(full_report, tmp_path):
    """Peaks and each cache level's roof as machine.json gives them; the ridge point is the
    highest peak over the bandwidth. Without machine.json the part is left out, silently."""
    root, page = full_report
    machine = json.loads((root / "results" / "machine.json").read_text())
    timing = _section(page, "timing")
    peaks = re.search(r'id="peaks-table".*?</table>', timing, re.S).group(0)
    for key in ("matmul", "onnxruntime_matmul", "numba_dot"):
        assert f"{fmt.sig(machine[key]['gflops'])} GFLOP/s" in peaks
    roofs = re.search(r'id="roofs-table".*?</table>', timing, re.S).group(0)
    rows = re.findall(r'<tr data-level="(\w+)">(.*?)</tr>', roofs, re.S)
    assert [level for level, _ in rows] == ["L1", "L2", "L3", "memory"]
    for level, row in rows:
        cells = [re.sub(r"<[^>]+>", "", c) for c in re.findall(r"<td[^>]*>(.*?)</td>", row)]
        bandwidth = machine["roofs"][level]
        assert cells[2] == f"{fmt.sig(bandwidth)} GB/s"
        assert cells[3] == f"{fmt.sig(machine['peak_gflops'] / bandwidth)} FLOP/byte"
    assert [c for _, row in rows[:3] for c in re.findall(r"KiB|MiB", row)] == ["KiB"] + ["MiB"] * 2
    write_synthetic_results(tmp_path, backends=["torch"], images=10)
    (tmp_path / "results" / "machine.json").unlink()
    inputs, config = named_inputs(tmp_path)
    results = load_results({k: v for k, v in inputs.items() if k != "machine"}, config)
    assert 'id="roofs-table"' not in render(results) and not results.notes


def test_variance_left_out_without_the_bench(tmp_path):
    write_synthetic_results(tmp_path, backends=["torch", "numpy_im2col"], images=30)
    (tmp_path / "results" / "bench_processes.json").unlink()
    inputs, config = named_inputs(tmp_path)
    del inputs["bench_processes"]
    results = load_results(inputs, config)
    page = render(results)
    assert 'id="variance-table"' not in page and not results.notes
    # no peer among the backends: no peer column, no peer card; torch (210 us, the reference)
    # is faster, but the fastest hand-written backend is numpy_im2col (1.4 ms)
    assert 'id="fact-peer"' not in page and "time vs" not in page
    assert 'class="value">numpy_im2col<' in re.search(
        r'id="fact-fastest">(.*?)</div></div>', page, re.S
    ).group(1)


def _network_rows(page: str) -> list[list[str]]:
    table = re.search(r'<table[^>]*id="network-table".*?</table>', page, re.S).group(0)
    return [
        [re.sub(r"<[^>]+>", "", cell).strip() for cell in re.findall(r"<td[^>]*>(.*?)</td>", row)]
        for row in re.findall(r"<tr>(.*?)</tr>", table, re.S)
        if "<td" in row
    ]


def test_network_table_shows_the_manifests_architecture(full_report, tmp_path):
    rows = _network_rows(full_report[1])
    assert rows[0] == [
        "conv1",
        "conv 3×3 /2 pad 1 + ReLU",
        "32 × 14 × 14",
        "320",
        "56,448",
        "2.1 %",
    ]
    assert [row[0] for row in rows] == ["conv1", "conv2", "conv3", "fc1", "fc2"]
    assert rows[-1][1:5] == ["linear", "10", "2,510", "2,500"]
    # another network: the table follows the manifest, never a list written for the seed's
    write_synthetic_results(tmp_path)
    manifest_path = tmp_path / "results" / "model" / "manifest.json"
    manifest = json.loads(manifest_path.read_text())
    lenet = {
        "layers": [
            {"conv": 6, "kernel": 5, "padding": 2},
            {"pool": "max", "kernel": 2},
            {"conv": 16, "kernel": 5},
            {"pool": "avg", "kernel": 2},
        ],
        "hidden": [120, 84],
    }
    manifest["architecture"] = build(lenet, (1, 28, 28), 10).to_dict()
    manifest_path.write_text(json.dumps(manifest))
    page = build_report(*named_inputs(tmp_path), tmp_path / "report.html").read_text()
    rows = _network_rows(page)
    assert [row[:3] for row in rows] == [
        ["conv1", "conv 5×5 /1 pad 2 + ReLU", "6 × 28 × 28"],
        ["pool1", "max pool 2×2 /2", "6 × 14 × 14"],
        ["conv2", "conv 5×5 /1 + ReLU", "16 × 10 × 10"],
        ["pool2", "avg pool 2×2 /2", "16 × 5 × 5"],
        ["fc1", "linear + ReLU", "120"],
        ["fc2", "linear + ReLU", "84"],
        ["fc3", "linear", "10"],
    ]
    assert rows[1][3:5] == ["0", "0"]  # pooling: no parameters, no multiply-adds counted
    assert "61,706</strong> parameters" in page  # LeNet-5's well-known count


def _where_rows(page: str) -> dict[str, list[str]]:
    table = re.search(r'<table[^>]*id="where-table".*?</table>', page, re.S).group(0)
    return {
        layer: [re.sub(r"<[^>]+>", " ", c).split() for c in re.findall(r"<td[^>]*>(.*?)</td>", row)]
        for layer, row in re.findall(r'<tr data-layer="(\w+)">(.*?)</tr>', table, re.S)
    }


def test_where_the_time_goes(full_report):
    """Per layer: multiply-adds, bytes, intensity and bound from the architecture, each backend's
    distance from the roof; the layers' sum against the whole forward pass; one sentence each."""
    root, page = full_report
    results = root / "results"
    machine = json.loads((results / "machine.json").read_text())
    layers = pd.read_csv(results / "layers.csv")
    where = _section(page, "where")
    rows = _where_rows(page)
    assert list(rows) == ["conv1", "conv2", "conv3", "fc1", "fc2"]
    # conv2: 64 x 32 x 3 x 3 weights + 64 biases; input 32 x 14 x 14, output 64 x 7 x 7
    weights, moved_in, moved_out = 4 * (64 * 32 * 9 + 64), 4 * 32 * 14 * 14, 4 * 64 * 7 * 7
    # multiply-adds to do: every output's taps that land inside the 14 x 14 input (stride 2,
    # padding 1: the first row and column of outputs lose one of their 3 taps each way)
    inside = [sum(0 <= 2 * o - 1 + k < 14 for k in range(3)) for o in range(7)]
    macs = 64 * 32 * sum(inside) ** 2
    assert sum(inside) == 20
    inside = [sum(0 <= 2 * o - 1 + k < 7 for k in range(3)) for o in range(4)]  # conv3: 7 -> 4
    assert rows["conv3"][1][0] == f"{128 * 64 * sum(inside) ** 2:,}"
    conv2 = rows["conv2"]
    assert conv2[1] == [f"{macs:,}", f"{64 * 7 * 7 * 32 * 9:,}", "with", "padding"]
    intensity = {size: 2 * macs / (weights / size + moved_in + moved_out) for size in (1, 250)}
    assert conv2[3] == [fmt.sig(intensity[1]), fmt.sig(intensity[250])]
    # the roof: the peak, or the bandwidth of the level the working set fits in times intensity
    peak, roofs = machine["peak_gflops"], machine["roofs"]
    for name in ("torch", "onnxruntime", "numpy_im2col"):
        column = 5 + ["torch", "onnxruntime", "numpy_im2col", "numpy_loops"].index(name)
        shown = []
        for size in (1, 250):
            working_set = weights + size * (moved_in + moved_out)
            level = "L2" if working_set <= 1024**2 else "L3"
            roof = min(peak, intensity[size] * roofs[level])
            seconds = layers.query("backend == @name and batch_size == @size and layer == 'conv2'")[
                "seconds"
            ].iloc[0]
            shown.append(f"{fmt.sig(roof / (2 * macs / seconds / 1e9), 2)}×")
        assert conv2[column] == shown, name
    assert "numba_loops" not in rows["conv2"] and "Not split yet: numba_loops" in where
    # fc1 at batch 1 reads its 2 MB of weights per image: memory-bound (L3); at 250, compute
    assert rows["fc1"][4] == ["memory", "(L3)", "compute"]
    fc1_bytes = 4 * (250 * 2048 + 250) + 4 * 2048 + 4 * 250
    fc1_flops = 2 * 2048 * 250
    seconds = layers.query("backend == 'torch' and batch_size == 1 and layer == 'fc1'")["seconds"]
    roof = fc1_flops / fc1_bytes * roofs["L3"]
    distance = roof / (fc1_flops / seconds.iloc[0] / 1e9)
    assert rows["fc1"][5][0] == f"{fmt.sig(distance, 2)}×"
    # sums: every backend's layers add up to LAYER_SUM of its whole forward pass
    sums = re.search(r'id="where-sums".*?</table>', where, re.S).group(0)
    assert sums.count(f'<td class="num">{LAYER_SUM:.2f}</td>') == 8  # 4 backends x 2 batches
    assert "off by over 15 %" not in sums
    sentences = re.findall(
        r"<li>(.*?)</li>", where.split('id="where-sentences"')[1].split("</ul>")[0]
    )
    assert [s.split(" (batch 1)")[0] for s in sentences] == [
        "torch",
        "onnxruntime",
        "numpy_im2col",
        "numpy_loops",
    ]
    assert "is limited by the interpreter" in sentences[-1]
    assert 'id="above-roof"' not in where and where.count("<img") == 2


def test_a_point_above_the_roofs_is_an_error(tmp_path):
    """No layer can run faster than the peak or move data faster than the L1 cache: such a
    point is listed as a measurement or counting error."""
    write_synthetic_results(tmp_path)
    path = tmp_path / "results" / "layers.csv"
    layers = pd.read_csv(path)
    fast = (layers.backend == "onnxruntime") & (layers.batch_size == 1) & (layers.layer == "conv3")
    layers.loc[fast, "seconds"] = 2 * 819_200 / 1e9 / 200  # 200 GFLOP/s: above the 150 peak
    layers.to_csv(path, index=False)
    where = _section(render(load_results(*named_inputs(tmp_path))), "where")
    above = re.search(r'id="above-roof">(.*?)</div>', where, re.S).group(1)
    assert re.findall(r"<li>(.*?)</li>", above) == ["onnxruntime, batch 1, conv3"]


def test_where_each_backend_trails_the_peer(tmp_path):
    """Per hand-written backend and batch size the peer was split at too: its layers' time over
    the peer's, each layer's ratio, and the layer that differs the most, from layers.csv."""
    write_synthetic_results(tmp_path)
    path = tmp_path / "results" / "layers.csv"
    layers = pd.read_csv(path)
    slow = (layers.backend == "numpy_im2col") & (layers.batch_size == 250)
    layers.loc[slow & (layers.layer == "conv2"), "seconds"] *= 1.5
    # the peer's fc2 as slow as numpy_im2col's: its largest layer, but no gap there
    peer_fc2 = (
        (layers.backend == "onnxruntime") & (layers.batch_size == 250) & (layers.layer == "fc2")
    )
    layers.loc[peer_fc2, "seconds"] *= 14
    # a layer the peer's profiler timed at 0 (fused into another) gets no ratio of its own
    peer_fc1 = (
        (layers.backend == "onnxruntime") & (layers.batch_size == 1) & (layers.layer == "fc1")
    )
    layers.loc[peer_fc1, "seconds"] = 0.0
    layers.to_csv(path, index=False)
    where = _section(render(load_results(*named_inputs(tmp_path))), "where")
    listed = where.split('id="where-peer"')[1].split("</ul>")[0]
    sentences = [html.unescape(s) for s in re.findall(r"<li>(.*?)</li>", listed)]
    # torch (the reference) and onnxruntime (the peer) get none; numba_loops was not split;
    # numpy_loops's batch 2 has no onnxruntime split to hold it to
    assert [s.split(":")[0] for s in sentences] == [
        "numpy_im2col, batch 1",
        "numpy_im2col, batch 250",
        "numpy_loops, batch 1",
    ]
    mine = layers[slow].set_index("layer")["seconds"]
    peer = layers.query("backend == 'onnxruntime' and batch_size == 250").set_index("layer")
    theirs = peer["seconds"]
    ratios = ", ".join(f"{n} {fmt.ratio(mine[n] / theirs[n])}" for n in theirs.index)
    gap = mine["conv2"] - theirs["conv2"]
    assert sentences[1] == (
        f"numpy_im2col, batch 250: {fmt.ratio(mine.sum() / theirs.sum())} onnxruntime's time "
        f"({fmt.duration(mine.sum())} against {fmt.duration(theirs.sum())} an image); "
        f"by layer {ratios}; conv2 differs the most ({fmt.duration(gap)} slower)."
    )
    assert "conv2 21.0×" in sentences[1] and "fc2 1.00×" in sentences[1]  # 1.5 x 14; 14 / 14
    assert "fc2 differs the most" in sentences[0]  # the largest layer: the widest gap
    assert "conv3 14.0×, fc1 –, fc2 14.0×" in sentences[0]


def test_where_follows_any_architecture(tmp_path):
    """Rows come from the manifest's architecture (pooling layers held to bandwidth); a table
    naming other layers is noted, not trusted."""
    write_synthetic_results(tmp_path)
    manifest_path = tmp_path / "results" / "model" / "manifest.json"
    manifest = json.loads(manifest_path.read_text())
    model = {"layers": [{"conv": 8, "kernel": 3, "padding": 1}, {"pool": "max", "kernel": 2}]}
    architecture = build(model | {"hidden": [32]}, (1, 28, 28), 10)
    manifest["architecture"] = architecture.to_dict()
    manifest_path.write_text(json.dumps(manifest))
    page = render(load_results(*named_inputs(tmp_path)))  # the seed's layers.csv: not trusted
    assert "layers.csv times layers the network lacks: conv2, conv3" in page
    write_layers(tmp_path / "results", ALL_BACKENDS, architecture)
    page = render(load_results(*named_inputs(tmp_path)))
    rows = _where_rows(page)
    assert list(rows) == ["conv1", "pool1", "fc1", "fc2"]
    assert rows["pool1"][1] == ["0"] and rows["pool1"][2][:2] == ["0", "B"]
    assert rows["pool1"][4] == ["memory", "(L1)", "memory", "(L3)"]
    assert 'id="above-roof"' not in page


def test_verdicts(full_report):
    _, page = full_report
    summary = _section(page, "summary")
    assert 'class="badge fail">disagree<' in summary  # numpy_loops flips image 7
    assert "numpy_loops differs on 1 of 200 images" in summary
    assert 'class="badge pass">all passed<' in summary
    assert "All 6 gradient checks passed." in summary
    assert 'class="badge pass">all 4 files verified<' in summary
    gradients = _section(page, "gradients")
    assert gradients.count('class="badge pass">pass<') == 6
    matrix = re.search(r'<table[^>]*id="gradcheck-matrix".*?</table>', gradients, re.S).group(0)
    assert matrix.count('class="num cell-pass">') == 6
    assert (
        '<td class="num cell-pass">5.5e-08</td>' in matrix
    )  # fc2.weight, loops vs finite_differences
    assert "finite_differences" in gradients and "Central finite differences" in gradients
    assert "PyTorch autograd in float32" in gradients


def test_agreement_section_shows_the_disagreement_and_mistakes(full_report):
    root, page = full_report
    agreement = _section(page, "agreement")
    assert f"#{DISAGREE_INDEX} · true" in agreement
    assert agreement.count('alt="test image') >= 2
    accuracy = pd.read_csv(root / "results" / "accuracy.csv").set_index("backend")
    wrong = 200 - accuracy.loc["torch", "correct"]
    assert f"{wrong} wrong out of the first 200 of 250 test images" in agreement
    assert agreement.count('class="thumb"') == min(wrong, 12)
    table = pd.read_csv(root / "results" / "agreement.csv")
    row = table[(table.backend_a == "torch") & (table.backend_b == "numpy_im2col")].iloc[0]
    assert fmt.scientific(row.max_abs_logit_diff) in agreement


def test_worked_example_values(full_report):
    _, page = full_report
    section = _section(page, "worked-example")
    assert 'class="badge pass">all match<' in section
    for value in ("93", "109", "157", "173", "94", "110", "158", "174"):
        assert f"<td>{value}</td>" in section
    assert section.count('class="badge pass">matches<') == 3  # loops, im2col, expected
    assert "worked_example_torch.json" in section  # says why torch's column is absent


def test_provenance(full_report):
    root, page = full_report
    section = _section(page, "provenance")
    manifest = json.loads((root / "results" / "model" / "manifest.json").read_text())
    assert manifest["sha256"] in section
    assert 'class="badge pass">matches the file<' in section
    assert "snakemake --cores 4 --configfile" in section
    assert "infer_numpy_loops_0" in section and "512 MB" in section
    assert "openblas 0.3.30 (pthreads threading, 1 threads, Haswell)" in section
    assert "Synthetic CPU @ 3.00GHz" in section
    assert "<td>name: haswell; features: avx, avx2, bmi," in section
    assert "<th>blas environment</th><td>none</td>" in section
    for file in manifest["dataset"]["files"].values():
        assert file["sha256"] in section
    # span: first start 0 s to numpy_loops end (50 + 2*4 + 65 = 123 s), not the 133.8 s sum
    assert 'id="fact-pipeline">2 min 03 s<' in page
    assert "add up to 2 min 14 s" in page


def test_self_contained_no_external_urls(full_report):
    _, page = full_report
    for attribute in re.findall(r'(?:src|href)\s*=\s*"([^"]*)"', page):
        assert attribute.startswith(("data:", "#")), attribute
    assert not re.search(r"url\(|@import|<script|<link", page, re.I)
    assert "default-src 'none'" in page  # the CSP forbids any request even if something slipped in
    images = re.findall(r'src="data:image/png;base64,', page)
    assert len(images) >= 6 + 12  # figures + thumbnails


# ---------------------------------------------------------------------------- robustness


def test_subset_of_backends_and_fewer_images(tmp_path):
    write_synthetic_results(
        tmp_path, backends=["torch", "numba_loops"], images=40, gradcheck_fail=True
    )
    (tmp_path / "results" / "worked_example_torch.json").write_text(
        json.dumps(
            {
                "function": "torch.nn.functional.conv2d",
                "torch": "2.13.0",
                "output": worked.EXPECTED.tolist(),
            }
        )
    )
    page = render(load_results(*named_inputs(tmp_path)))
    summary_table = re.search(r'<table[^>]*id="summary-table".*?</table>', page, re.S).group(0)
    assert re.findall(r'data-backend="([^"]+)"', summary_table) == ["torch", "numba_loops"]
    assert _row(page, "summary-table", "numba_loops")[1] == "40"
    assert "the first 40 of 250 test images" in page
    assert 'class="badge pass">identical predictions<' in page
    assert (
        "5 of 6 gradient checks passed; failed: conv1.bias (loops vs finite_differences)." in page
    )
    assert 'class="badge fail">1 failed<' in page
    assert '<td class="num cell-fail">3.0e-03</td>' in page
    worked_example = _section(page, "worked-example")
    assert worked_example.count('class="badge pass">matches<') == 4  # loops, im2col, PyTorch, hand
    assert "torch.nn.functional.conv2d (torch 2.13.0)" in worked_example
    assert "is not shown" not in worked_example
    assert "None: every backend predicts the same class on every image." in page


def test_missing_files_are_reported_not_fatal(tmp_path):
    write_synthetic_results(tmp_path, backends=["torch", "numpy_im2col"], images=30)
    results = tmp_path / "results"
    for name in (
        "gradcheck.csv",
        "throughput.csv",
        "inference/numpy_im2col.csv",
        "environment.json",
    ):
        (results / name).unlink()
    for path in (results / "benchmarks").iterdir():
        path.unlink()
    page = render(load_results(*named_inputs(tmp_path)))
    notes = re.search(r'<div class="notes">(.*?)</div>', page, re.S).group(1)
    assert "gradcheck.csv not found" in notes
    assert "inference/numpy_im2col.csv not found" in notes
    assert "no inference results for numpy_im2col" in notes
    assert "no results (inference/numpy_im2col.csv missing)" in page
    assert 'class="badge na">not run<' in page
    assert "No benchmark files found." in page


def test_facts_come_from_the_steps_that_own_them(tmp_path):
    """Accuracy from accuracy.csv, margins from disagreements.csv, digests from the manifest
    (re-verified on disk): the report restates them, never recomputes them from predictions."""
    write_synthetic_results(tmp_path, backends=["torch", "numpy_loops"], images=30)
    results = tmp_path / "results"
    accuracy = pd.read_csv(results / "accuracy.csv")
    accuracy.loc[accuracy.backend == "numpy_loops", "accuracy"] = 0.5  # not what the csv says
    accuracy.to_csv(results / "accuracy.csv", index=False)
    disagreements = pd.read_csv(results / "disagreements.csv")
    disagreements["margin_b"] = 1.5e-3
    disagreements.to_csv(results / "disagreements.csv", index=False)
    (results / "model" / "weights.npz").write_bytes(b"other weights")
    page = render(load_results(*named_inputs(tmp_path)))
    assert _row(page, "summary-table", "numpy_loops")[2] == "50.00 %"
    agreement = _section(page, "agreement")
    assert '<td>numpy_loops</td><td class="num">9</td><td class="num">1.5e-03</td>' in agreement
    assert 'class="badge fail">differs from the file<' in _section(page, "provenance")


def test_named_inputs_are_the_report_rules_inputs(tmp_path):
    """The tests call the report with the names the rule declares: its `sources` (the report's
    own source files, left out of its job) and the files of `report_files` (common.smk)."""
    rules = Path(__file__).parents[1] / "workflow" / "rules"
    rule = (rules / "report.smk").read_text().split("rule report:", 1)[1]
    block = rule.split("    input:\n", 1)[1].split("    output:\n", 1)[0]
    assert set(re.findall(r"^        (\w+)=", block, re.M)) == {"sources"}
    assert "unpack(lambda wildcards: report_files(experiment_of(wildcards)))" in block
    common = (rules / "common.smk").read_text().split("def report_files(name):", 1)[1]
    body = common.split("\n    return {\n", 1)[1].split("\n    }\n", 1)[0]
    declared = set(re.findall(r'^        "(\w+)": ', body, re.M))
    write_synthetic_results(tmp_path, backends=["torch"], images=10)
    (tmp_path / "results" / "worked_example_torch.json").write_text("{}")
    assert set(named_inputs(tmp_path)[0]) == declared


def test_report_is_given_every_benchmark_file_the_run_writes(tmp_path, run_snakemake):
    """The per-rule wall-time table lists every benchmarked job of the whole run (the NumPy
    training and the NumPy-trained inference too), as the dry run plans them."""
    dry = run_snakemake(tmp_path, {}, "--dry-run", "--printshellcmds", timeout=300)
    assert dry.returncode == 0, dry.stderr[-3000:]
    planned = set(re.findall(r"^    benchmark: (\S+)$", dry.stdout, re.M))
    command = re.search(
        r"^(?:Shell command: )?python -m cnnbench\.report '(.+)' >", dry.stdout, re.M
    ).group(1)
    given = json.loads(command)["input"]["benchmarks"]
    assert len(given) == len(set(given)) and set(given) == planned
    assert {
        "results/benchmarks/train_numpy.tsv",
        "results/benchmarks/infer_numpy_trained_onnxruntime.tsv",
        "results/benchmarks/infer_numpy_loops_1.tsv",
    } <= planned


def test_cli_with_one_backend_and_a_damaged_data_file(tmp_path):
    """``python -m cnnbench.report JOB`` as the Snakemake rule runs it; torch is never imported."""
    write_synthetic_results(tmp_path, backends=["torch"], images=20)
    data = tmp_path / "results" / "data" / "train-labels-idx1-ubyte.gz"
    data.write_bytes(data.read_bytes() + b"x")
    out = tmp_path / "out" / "report.html"
    inputs, settings = named_inputs(tmp_path)
    job = json.dumps({"input": inputs, "output": {"html": str(out)}, "settings": settings})
    argv = [job]  # as the rule passes it
    script = (
        "import runpy, sys\n"
        f"sys.argv = ['cnnbench.report', *{argv!r}]\n"
        "try:\n"
        "    runpy.run_module('cnnbench.report', run_name='__main__', alter_sys=True)\n"
        "except SystemExit as exit:\n"
        "    assert exit.code == 0, exit.code\n"
        "assert 'torch' not in sys.modules, 'the report imported torch'\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=120, check=False
    )
    assert done.returncode == 0, done.stderr
    assert "wrote" in done.stdout
    assert not [p for p in out.parent.iterdir() if p.name != "report.html"]  # no temp file left
    page = out.read_text(encoding="utf-8")
    assert page.startswith("<!DOCTYPE html>")
    assert 'class="badge fail">checksum mismatch<' in page
    assert "sha256 of the file on disk is" in page
    assert "Only torch ran; there is nothing to compare." in page
    assert '<div class="notes">' not in page  # one backend: an empty agreement table is expected
    assert "snakemake --cores 4 --configfile run-config.yaml" in page
    assert "effective config" in page and "t10k-images-idx3-ubyte.gz" in page


# ---------------------------------------------------------------------------- worked example, formatting


def test_worked_example_with_torch_result_and_broken_ops(monkeypatch):
    monkeypatch.setattr(
        worked.ops, "conv2d_loops", lambda x, w, b, stride, padding: worked.EXPECTED + 1
    )

    def failing(x, w, b, stride, padding):
        raise ValueError("broken on purpose")

    monkeypatch.setattr(worked.ops, "conv2d_im2col", failing)
    data = worked.compute({"output": worked.EXPECTED.tolist(), "torch": "2.13.0"})
    by_name = {c["name"]: c for c in data["columns"]}
    assert not by_name["loops"]["matches"]
    assert by_name["im2col"]["error"] == "ValueError: broken on purpose"
    assert by_name["PyTorch"]["matches"] and "2.13.0" in by_name["PyTorch"]["call"]
    assert not data["passed"]


def test_worked_example_with_the_real_ops_and_torch():
    data = worked.compute(worked_example.torch_result())
    assert data["passed"], [c.get("error") for c in data["columns"]]
    assert [c["name"] for c in data["columns"]] == [
        "loops",
        "im2col",
        "PyTorch",
        "expected (by hand)",
    ]


@pytest.mark.parametrize(
    ("seconds", "text"),
    [
        (0, "0 s"),
        (1.234e-7, "123 ns"),
        (2.1e-4, "210 µs"),
        (0.0123, "12.3 ms"),
        (0.09996, "100 ms"),
        (2.5, "2.50 s"),
        (59.4, "59.4 s"),
        (125, "2 min 05 s"),
        (3725, "1 h 02 min"),
        (None, "–"),
    ],
)
def test_duration(seconds, text):
    assert fmt.duration(seconds) == text


def test_percent_never_rounds_to_a_lie():
    assert fmt.percent(1.0) == "100 %"
    assert fmt.percent(0.99999) == "> 99.99 %"
    assert fmt.percent(0.9791) == "97.91 %"
    assert fmt.percent(0.00001) == "< 0.01 %"
    assert fmt.percent(0) == "0.00 %"


def test_other_formats():
    assert fmt.integer(10000) == "10,000"
    assert fmt.speedup(1e-3, 1e-4) == "10.0× faster"
    assert fmt.speedup(1e-4, 0.23) == "2,300× slower"
    assert fmt.speedup(1e-3, 1e-3) == "1.00× (same)"
    assert fmt.rate(12345.6) == "12,346 /s"
    assert fmt.scientific(2.1e-7) == "2.1e-07"
    assert fmt.megabytes(512.3) == "512 MB"


# ---------------------------------------------------------------------------- figures read well


def _figures_drawn_by(monkeypatch, function, *args):
    """The matplotlib figures ``function`` draws (captured before they become PNGs)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    from cnnbench.report import figures

    drawn = []
    monkeypatch.setattr(figures, "to_data_uri", lambda figure: drawn.append(figure) or "data:")
    function(*args)
    for figure in drawn:
        FigureCanvasAgg(figure).draw()  # lay out as when saved, so text extents are final
    return drawn


@pytest.mark.parametrize("backends", [2, 5, 8])
def test_agreement_labels_fit_their_cells(monkeypatch, backends):
    """Every annotation of both heatmaps lies inside its own cell, up to 8 backends, with the
    widest labels (10,000 images; pairs that saw different numbers of images)."""
    from cnnbench.report import figures

    names = [f"backend_{k}_name" for k in range(backends)]
    counts = pd.DataFrame(9_999.0, index=names, columns=names)
    images = pd.DataFrame(10_000.0, index=names, columns=names)
    images.iloc[0, 1] = images.iloc[1, 0] = 8_000.0
    counts.iloc[0, 1] = counts.iloc[1, 0] = 7_999.0
    diffs = pd.DataFrame(1.2345e-6, index=names, columns=names)
    for k in range(backends):
        counts.iloc[k, k] = images.iloc[k, k]
        diffs.iloc[k, k] = 0.0
    (figure,) = _figures_drawn_by(monkeypatch, figures.agreement_heatmaps, counts, images, diffs)
    renderer = figure.canvas.get_renderer()
    checked = 0
    for ax in figure.axes:
        for text in ax.texts:
            if not text.get_text():
                continue
            x, y = text.get_position()
            corners = ax.transData.transform([(x - 0.5, y - 0.5), (x + 0.5, y + 0.5)])
            left, right = sorted(corners[:, 0])
            bottom, top = sorted(corners[:, 1])
            box = text.get_window_extent(renderer)
            assert left < box.x0 and box.x1 < right, (text.get_text(), box, left, right)
            assert bottom < box.y0 and box.y1 < top, (text.get_text(), box, bottom, top)
            checked += 1
    assert checked == 2 * backends**2 - backends  # the right map leaves its diagonal blank


@pytest.mark.parametrize("epochs", [1, 2, 5])
def test_epoch_axes_tick_whole_epochs(monkeypatch, epochs):
    from cnnbench.report import figures

    metrics = pd.DataFrame(
        {
            "epoch": range(1, epochs + 1),
            "train_loss": np.linspace(0.4, 0.1, epochs),
            "test_loss": np.linspace(0.3, 0.1, epochs),
            "test_accuracy": np.linspace(0.95, 0.98, epochs),
            "seconds": 10.0,
        }
    )
    drawn = _figures_drawn_by(monkeypatch, figures.training_curves, metrics)
    drawn += _figures_drawn_by(monkeypatch, figures.training_overlay, metrics, metrics)
    assert len(drawn) == 2
    for ax in (ax for figure in drawn for ax in figure.axes):
        low, high = ax.get_xlim()
        ticks = [float(t) for t in ax.get_xticks() if low <= t <= high]
        assert ticks and all(t.is_integer() for t in ticks), ticks
        assert low < 1 and high > epochs
        if epochs < 3:  # every epoch ticked, with room around the points
            assert ticks == list(range(1, epochs + 1)), ticks
            assert (low, high) == (0.5, epochs + 0.5)


def test_the_jobs_packing_onto_the_cores(tmp_path):
    """Each job on the lowest row free at its start (the rows in use are the jobs running then),
    and the share of the cores kept busy: the jobs' summed wall time over the cores, against
    the elapsed span."""
    write_synthetic_results(tmp_path)  # every backend: five inference jobs from 50 s, 2 s apart
    results = load_results(*named_inputs(tmp_path))
    rows = provenance.job_rows(results.benchmarks)
    assert [(job["rule"], job["row"]) for job in rows] == [
        ("download_test_images", 0),
        ("train", 0),
        ("export", 0),
        ("gradcheck", 0),
        ("infer_torch_0", 0),  # from 50 s to 55 s
        ("infer_onnxruntime_0", 1),  # from 52 s: row 0 busy until 55 s
        ("infer_numpy_im2col_0", 2),  # from 54 s: rows 0 and 1 busy
        ("infer_numba_loops_0", 0),  # from 56 s: row 0 free again
        ("infer_numpy_loops_0", 1),
    ]
    assert rows[0]["start"] == 0 and rows[-1]["end"] == pytest.approx(123, abs=0.01)
    # 133.8 s of jobs on the synthetic machine's 8 cores: 16.7 s if no core waited, in 123 s;
    # 120.4 s of CPU time (0.9 of each job's wall time) in 8 x 123 core-seconds
    time = provenance.pipeline_time(results)
    assert time["packing"]["over"] == "7.35×" and time["packing"]["busy"] == "12 %"
    assert (
        "the run took 2 min 03 s, 7.35× that; their 2 min 00 s of CPU time kept the cores 12 %"
        in (time["packing"]["text"])
    )
    page = render(results)
    assert "7.35× the shortest possible" in page and 'id="job-timeline"' in page
    assert provenance.packing(100.0, 50.0, 2) == {
        "over": "1.00×",
        "busy": None,
        "reserved_over": None,
        "text": "on this machine's 2 cores the jobs' 1 min 40 s of wall time would take 50.0 s if "
        "no core ever waited; the run took 50.0 s, 1.00× that",
    }
    assert provenance.packing(100.0, 50.0, 2, cpu=75.0)["busy"] == "75 %"


def _extend_benchmarks(results: Path, threads: dict[str, int]) -> None:
    """Rewrite the benchmark files as `--benchmark-extended` writes them (rule, declared
    threads, the dict-valued columns as Snakemake prints them), keeping their times."""
    for path in (results / "benchmarks").glob("*.tsv"):
        header, values = path.read_text().splitlines()
        stamp = path.stat().st_mtime
        extra = [
            "7",
            path.stem,
            "{}",
            "{'settings': '{}'}",
            str(threads.get(path.stem, 1)),
            "97.0",
            "{'_nodes': 1, '_cores': 1}",
            "{'src/cnnbench/__init__.py': 0.0001}",
        ]
        path.write_text(
            header + "\tjobid\trule_name\twildcards\tparams\tthreads\tcpu_usage\tresources"
            "\tinput_size_mb\n" + values + "\t" + "\t".join(extra) + "\n"
        )
        os.utime(path, (stamp, stamp))


def test_packing_against_the_declared_threads(tmp_path):
    """With extended benchmark files, the shortest run the jobs' declared threads allow: each
    job's wall time times its threads over the most threads a job declared (a timed job, all
    of --cores), against the elapsed span."""
    write_synthetic_results(tmp_path)
    # train and the torch inference declare the synthetic machine's 8 cores, the rest 1
    _extend_benchmarks(tmp_path / "results", {"train": 8, "infer_torch_0": 8})
    results = load_results(*named_inputs(tmp_path))
    assert results.benchmarks["rule"].iloc[0] == "download_test_images"
    # (3.2 + 8 x 36.5 + 1.1 + 8.0 + 8 x 5 + 3 x 5 + 65) / 8 = 424.3 / 8 = 53.0 s, of 123 s
    assert provenance.reserved_span(results.benchmarks) == pytest.approx(53.0375)
    time = provenance.pipeline_time(results)
    assert time["packing"]["reserved_over"] == "2.32×"
    assert "allow no run shorter than 53.0 s: this one took 2.32× that" in time["packing"]["text"]
    assert "2.32× the shortest its jobs' threads allow" in render(results)
    # Every job at 1 thread: their sum, above the span, bounds nothing (--cores unknown).
    ones = tmp_path / "ones"
    write_synthetic_results(ones)
    _extend_benchmarks(ones / "results", {})
    time = provenance.pipeline_time(load_results(*named_inputs(ones)))
    assert time["packing"]["reserved_over"] is None and "allow" not in time["packing"]["text"]


def test_benchmarks_from_separate_sessions_show_no_packing(tmp_path):
    """Benchmark files written a day apart (another run's, or a sweep's experiments taking turns)
    give no elapsed span, so neither a packing figure nor a timeline: the page still renders."""
    write_synthetic_results(tmp_path)
    train = tmp_path / "results" / "benchmarks" / "train.tsv"
    os.utime(train, (train.stat().st_mtime - 86_400,) * 2)
    results = load_results(*named_inputs(tmp_path))
    time = provenance.pipeline_time(results)
    assert time["packing"] is None and time["timeline"] is None
    page = render(results)
    assert "ran in separate sessions" in page and 'id="job-timeline"' not in page
