"""Timed inference (run, shards, gather), batched throughput and the benchmark's report."""

from __future__ import annotations

import itertools
import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from cnnbench import backends, bench, inference, throughput
from cnnbench.data import load_split, to_model_input

IMAGES = 12


@pytest.fixture(scope="module")
def data_args(mnist_dir: Path) -> list[str]:
    return [
        "--test-images",
        str(mnist_dir / "t10k-images-idx3-ubyte.gz"),
        "--test-labels",
        str(mnist_dir / "t10k-labels-idx1-ubyte.gz"),
    ]


def run_shard(backend, weights, data_args, limit, out_dir, shard=0, shards=1, warmup=2):
    out = out_dir / f"{backend}_{limit}_{shard}_of_{shards}.csv"
    options = {"--limit": limit, "--shard": shard, "--shards": shards, "--warmup": warmup}
    inference.main(
        ["run", "--backend", backend, "--weights", str(weights), *data_args]
        + [str(item) for option in options.items() for item in option]
        + ["--out", str(out), "--meta", str(out.with_suffix(".json"))]
    )
    return out


@pytest.mark.parametrize(
    ("total", "shards"), [(1, 1), (12, 2), (10, 3), (10000, 2), (10000, 7), (5, 5)]
)
def test_shard_ranges_cover_total(total, shards):
    ranges = inference.shard_ranges(total, shards)
    assert len(ranges) == shards
    assert ranges[0][0] == 0 and ranges[-1][1] == total
    assert all(stop == start for (_, stop), (start, _) in itertools.pairwise(ranges))
    sizes = [stop - start for start, stop in ranges]
    assert max(sizes) - min(sizes) <= 1 and min(sizes) >= 1


@pytest.mark.parametrize(("total", "shards"), [(3, 4), (0, 1), (5, 0)])
def test_shard_ranges_reject_empty_shards(total, shards):
    with pytest.raises(ValueError):
        inference.shard_ranges(total, shards)


@pytest.mark.parametrize("backend", ["torch", "numpy_im2col"])
def test_gathered_shards_equal_unsharded_run(backend, weights_path, data_args, tmp_path):
    whole = run_shard(backend, weights_path, data_args, IMAGES, tmp_path)
    shards = [
        run_shard(backend, weights_path, data_args, IMAGES, tmp_path, shard=k, shards=2)
        for k in range(2)
    ]
    gathered = tmp_path / f"{backend}.csv"
    inference.main(
        ["gather", "--out", str(gathered), "--meta", str(tmp_path / f"{backend}.json")]
        + [str(path) for path in reversed(shards)]  # order on the command line does not matter
    )
    whole_table, gathered_table = pd.read_csv(whole), pd.read_csv(gathered)
    assert list(gathered_table.columns) == inference.COLUMNS
    pd.testing.assert_frame_equal(
        gathered_table.drop(columns="latency_s"), whole_table.drop(columns="latency_s")
    )

    # byte-identical outside the latency column: logits written with float32 round-trip precision
    def without_latency(path: Path) -> list[list[str]]:
        return [line.split(",")[:3] + line.split(",")[4:] for line in path.read_text().splitlines()]

    assert without_latency(gathered) == without_latency(whole)
    assert (gathered_table["latency_s"] > 0).all()

    images, labels = load_split(data_args[1], data_args[3])
    x = to_model_input(images[:IMAGES])
    expected = np.concatenate(
        [backends.load(backend, weights_path).predict(x[i : i + 1]) for i in range(IMAGES)]
    )
    table = inference.read_predictions(gathered)
    np.testing.assert_array_equal(table[inference.LOGIT_COLUMNS].to_numpy(), expected)
    np.testing.assert_array_equal(table["index"], np.arange(IMAGES))
    np.testing.assert_array_equal(table["label"], labels[:IMAGES])
    np.testing.assert_array_equal(table["pred"], expected.argmax(axis=1))

    meta = json.loads((tmp_path / f"{backend}.json").read_text())
    shard_metas = [json.loads(path.with_suffix(".json").read_text()) for path in shards]
    assert meta["backend"] == backend and meta["images"] == IMAGES and meta["shards"] == 2
    assert meta["warmup"] == 2 and meta["threads"] == 1 and meta["compile_s"] is None
    assert meta["ranges"] == [[0, IMAGES // 2], [IMAGES // 2, IMAGES]]
    assert sorted(meta["load_s_per_shard"]) == sorted(m["load_s"] for m in shard_metas)


def test_loop_backends_run(weights_path, data_args, tmp_path):
    for backend in ("numpy_loops", "numba_loops"):
        # the second of 3 shards of 6 images: images 2 and 3
        out = run_shard(backend, weights_path, data_args, 6, tmp_path, shard=1, shards=3, warmup=0)
        table = inference.read_predictions(out)
        meta = json.loads(out.with_suffix(".json").read_text())
        assert table["index"].tolist() == [2, 3] and (table["latency_s"] > 0).all()
        assert meta["images"] == 2 and meta["backend"] == backend
        assert (meta["compile_s"] is None) == (backend == "numpy_loops")


def test_gather_rejects_inconsistent_shards(weights_path, data_args, tmp_path):
    first = run_shard("numpy_im2col", weights_path, data_args, 9, tmp_path, shard=0, shards=3)
    gap = run_shard("numpy_im2col", weights_path, data_args, 9, tmp_path, shard=2, shards=3)
    other = run_shard("torch", weights_path, data_args, 9, tmp_path, shard=1, shards=3)
    out = ["--out", str(tmp_path / "g.csv"), "--meta", str(tmp_path / "g.json")]
    with pytest.raises(ValueError, match="contiguous"):
        inference.main(["gather", *out, str(first), str(gap)])
    with pytest.raises(ValueError, match="backend is 'torch'"):
        inference.main(["gather", *out, str(first), str(other)])
    assert not (tmp_path / "g.csv").exists()


@pytest.mark.parametrize(
    ("limit", "shard", "shards", "complaint"),
    [
        (0, 0, 1, "--limit must be between 1 and the 10000 test images, got 0"),
        (10001, 0, 1, "--limit must be between 1 and the 10000 test images, got 10001"),
        (4, 2, 2, "--shard must be in [0, 2), got 2"),
        (2, 0, 3, "3 shards for 2 images would leave some shards empty"),
    ],
)
def test_run_rejects_bad_range(
    weights_path, data_args, tmp_path, capsys, limit, shard, shards, complaint
):
    with pytest.raises(SystemExit):
        run_shard("numpy_im2col", weights_path, data_args, limit, tmp_path, shard, shards)
    assert complaint in capsys.readouterr().err


def test_throughput_table(weights_path, data_args, tmp_path):
    out = tmp_path / "throughput.csv"
    settings = "--batch-sizes 1 8 --images 16 --loop-images 2 --repeats 2 --threads 1"
    paths = ["--weights", str(weights_path), "--out", str(out)]
    throughput.main(
        [*data_args, *paths, "--backends", "numpy_im2col", "numpy_loops", *settings.split()]
    )
    table = pd.read_csv(out)
    assert list(table.columns) == throughput.COLUMNS
    rows = table.set_index(["backend", "batch_size"])
    # the loop backend's batch 8 is capped at its 2-image sample
    assert sorted(rows.index) == [
        ("numpy_im2col", 1),
        ("numpy_im2col", 8),
        ("numpy_loops", 1),
        ("numpy_loops", 2),
    ]
    assert (table["images"] == table["backend"].map({"numpy_im2col": 16, "numpy_loops": 2})).all()
    assert (table["repeats"] == 2).all()
    np.testing.assert_allclose(table["images_per_s"], table["images"] / table["seconds"])
    # the hand-written loops are far slower than the tuned NumPy backend
    assert (
        rows.loc[("numpy_loops", 1), "images_per_s"] < rows.loc[("numpy_im2col", 1), "images_per_s"]
    )


def test_bench_prints_every_backend(weights_path, data_args, capsys):
    settings = "--images 2 --batch-size 4 --rounds 1 --threads 1 --backends torch numpy_im2col"
    bench.main([*data_args, "--weights", str(weights_path), *settings.split()])
    printed = capsys.readouterr().out
    assert "torch" in printed and "1.00x" in printed
    assert "numpy_im2col stages, batch 4" in printed and "fc1 matmul" in printed
