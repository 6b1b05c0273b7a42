"""Timed inference (run, shards, gather), batched throughput and the benchmark's report."""

from __future__ import annotations

import itertools
import json
import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from conftest import manifest_of, run_step

from cnnbench import backends
from cnnbench.bench import __main__ as bench
from cnnbench.common import tables
from cnnbench.data import load_split, to_model_input
from cnnbench.network.architecture import SEED
from cnnbench.steps import gather, infer, throughput

IMAGES = 12


@pytest.fixture(scope="module")
def test_data(mnist_dir: Path) -> dict[str, Path]:
    return {
        "test_images": mnist_dir / "t10k-images-idx3-ubyte.gz",
        "test_labels": mnist_dir / "t10k-labels-idx1-ubyte.gz",
    }


def run_shard(backend, weights, test_data, limit, out_dir, shard=0, shards=1, warmup=2):
    out = out_dir / f"{backend}_{limit}_{shard}_of_{shards}.csv"
    settings = {"backend": backend, "limit": limit, "shard": shard, "shards": shards}
    run_step(
        infer,
        input={"weights": weights, "manifest": manifest_of(weights), **test_data},
        output={"csv": out, "meta": out.with_suffix(".json")},
        settings=settings | {"warmup": warmup, "threads": 1},
    )
    return out


def run_gather(shards, out: Path) -> None:
    run_step(gather, input={"csv": shards}, output={"csv": out, "meta": out.with_suffix(".json")})


@pytest.mark.parametrize(
    ("total", "shards"), [(1, 1), (12, 2), (10, 3), (10000, 2), (10000, 7), (5, 5)]
)
def test_shard_ranges_cover_total(total, shards):
    ranges = infer.shard_ranges(total, shards)
    assert len(ranges) == shards
    assert ranges[0][0] == 0 and ranges[-1][1] == total
    assert all(stop == start for (_, stop), (start, _) in itertools.pairwise(ranges))
    sizes = [stop - start for start, stop in ranges]
    assert max(sizes) - min(sizes) <= 1 and min(sizes) >= 1


@pytest.mark.parametrize(("total", "shards"), [(3, 4), (0, 1), (5, 0)])
def test_shard_ranges_reject_empty_shards(total, shards):
    with pytest.raises(ValueError):
        infer.shard_ranges(total, shards)


@pytest.mark.parametrize("backend", ["torch", "numpy_im2col"])
def test_gathered_shards_equal_unsharded_run(backend, weights_path, test_data, tmp_path):
    whole = run_shard(backend, weights_path, test_data, IMAGES, tmp_path)
    shards = [
        run_shard(backend, weights_path, test_data, IMAGES, tmp_path, shard=k, shards=2)
        for k in range(2)
    ]
    gathered = tmp_path / f"{backend}.csv"
    run_gather(list(reversed(shards)), gathered)  # the order of the inputs does not matter
    whole_table, gathered_table = pd.read_csv(whole), pd.read_csv(gathered)
    assert list(gathered_table.columns) == tables.prediction_columns(SEED.classes)
    pd.testing.assert_frame_equal(
        gathered_table.drop(columns="latency_s"), whole_table.drop(columns="latency_s")
    )

    # byte-identical outside the latency column: logits written with float32 round-trip precision
    def without_latency(path: Path) -> list[list[str]]:
        return [line.split(",")[:3] + line.split(",")[4:] for line in path.read_text().splitlines()]

    assert without_latency(gathered) == without_latency(whole)
    assert (gathered_table["latency_s"] > 0).all()

    images, labels = load_split(test_data["test_images"], test_data["test_labels"], SEED)
    x = to_model_input(images[:IMAGES])
    expected = np.concatenate(
        [backends.load(backend, weights_path, SEED).predict(x[i : i + 1]) for i in range(IMAGES)]
    )
    table = tables.read_predictions(gathered)
    np.testing.assert_array_equal(table[tables.logit_columns(SEED.classes)].to_numpy(), expected)
    np.testing.assert_array_equal(table["index"], np.arange(IMAGES))
    np.testing.assert_array_equal(table["label"], labels[:IMAGES])
    np.testing.assert_array_equal(table["pred"], expected.argmax(axis=1))

    meta = json.loads((tmp_path / f"{backend}.json").read_text())
    shard_metas = [json.loads(path.with_suffix(".json").read_text()) for path in shards]
    assert meta["backend"] == backend and meta["images"] == IMAGES and meta["shards"] == 2
    assert meta["warmup"] == 2 and meta["threads"] == 1 and meta["compile_s"] is None
    assert meta["ranges"] == [[0, IMAGES // 2], [IMAGES // 2, IMAGES]]
    assert sorted(meta["load_s_per_shard"]) == sorted(m["load_s"] for m in shard_metas)


def test_loop_backends_run(weights_path, test_data, tmp_path):
    for backend in ("numpy_loops", "numba_loops"):
        # the second of 3 shards of 6 images: images 2 and 3
        out = run_shard(backend, weights_path, test_data, 6, tmp_path, shard=1, shards=3, warmup=0)
        table = tables.read_predictions(out)
        meta = json.loads(out.with_suffix(".json").read_text())
        assert table["index"].tolist() == [2, 3] and (table["latency_s"] > 0).all()
        assert meta["images"] == 2 and meta["backend"] == backend
        assert (meta["compile_s"] is None) == (backend == "numpy_loops")


def test_gather_rejects_inconsistent_shards(weights_path, test_data, tmp_path, capsys):
    first = run_shard("numpy_im2col", weights_path, test_data, 9, tmp_path, shard=0, shards=3)
    gap = run_shard("numpy_im2col", weights_path, test_data, 9, tmp_path, shard=2, shards=3)
    other = run_shard("torch", weights_path, test_data, 9, tmp_path, shard=1, shards=3)
    for shards, complaint in (([first, gap], "contiguous"), ([first, other], "backend is 'torch'")):
        with pytest.raises(SystemExit):
            run_gather(shards, tmp_path / "g.csv")
        assert complaint in capsys.readouterr().err
    assert not (tmp_path / "g.csv").exists()


@pytest.mark.parametrize(
    ("limit", "shard", "shards", "complaint"),
    [
        (10001, 0, 1, "inference.limit 10001 exceeds the 10000 test images"),
        (2, 0, 3, "3 shards for 2 images would leave some shards empty"),
    ],
)
def test_run_rejects_bad_range(
    weights_path, test_data, tmp_path, capsys, limit, shard, shards, complaint
):
    with pytest.raises(SystemExit):
        run_shard("numpy_im2col", weights_path, test_data, limit, tmp_path, shard, shards)
    assert complaint in capsys.readouterr().err


def test_throughput_table(weights_path, test_data):
    images, _ = load_split(test_data["test_images"], test_data["test_labels"], SEED)
    x = to_model_input(images[:16])
    table = throughput.measure(["numpy_im2col", "numpy_loops"], weights_path, SEED, x, [1, 8], 2, 2)
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


def test_bench_prints_every_backend(weights_path, test_data, capsys):
    settings = "--images 2 --batch-size 4 --rounds 1 --threads 1 --backends torch numpy_im2col"
    files = [
        "--test-images",
        str(test_data["test_images"]),
        "--test-labels",
        str(test_data["test_labels"]),
    ]
    bench.main([*files, "--weights", str(weights_path), *settings.split()])
    printed = capsys.readouterr().out
    assert "torch" in printed and "1.00x" in printed
    assert "numpy_im2col layers, batch 4" in printed
    assert re.search(r"^  fc2 +[\d.]+ us", printed, re.M)
