"""The NumPy trainer follows PyTorch's training step for step (float64), on real MNIST images."""

from __future__ import annotations

import csv
import hashlib
import json

import numpy as np
import pytest
from conftest import mnist_splits, run_step

from cnnbench.common.numerics import max_norm_relative_error
from cnnbench.common.runtime import set_threads
from cnnbench.data import to_model_input
from cnnbench.network.architecture import SEED, build
from cnnbench.network.weights import load_weights, save_weights
from cnnbench.steps import train as torch_trainer
from cnnbench.training import numpy_trainer as train_numpy
from cnnbench.training import seeding as train

# 400 images, batches of 16: 25 steps an epoch, 8 epochs = 200 steps.
CHECK = train.TrainSettings(epochs=8, batch_size=16, lr=0.001, seed=0, device="cpu", limit=400)
LOSS_TOLERANCE = 1e-10
PARAMETER_TOLERANCE = 1e-9


@pytest.fixture(scope="module")
def splits(mnist_dir):
    return mnist_splits(mnist_dir, 300)


def assert_in_step(rows: list[dict], steps: int) -> None:
    assert [row["step"] for row in rows] == list(range(1, steps + 1))
    for row in rows:
        assert row["dtype"] == "float64"
        assert row["loss_relative_difference"] <= LOSS_TOLERANCE, row
        assert row["max_relative_parameter_difference"] <= PARAMETER_TOLERANCE, row


def test_im2col_training_follows_torch_for_200_steps_in_float64(splits):
    set_threads(1)
    initial = train.initial_weights(CHECK.seed, SEED)
    rows = train_numpy.side_by_side(CHECK, splits[0], initial, SEED, np.float64, steps=200)
    assert_in_step(rows, 200)
    assert [row["epoch"] for row in rows[::25]] == list(range(1, 9))
    # It learns: the last epoch's losses are well below the first steps' (about log 10).
    assert np.mean([row["loss_torch"] for row in rows[:5]]) > 2.0
    assert np.mean([row["loss_numpy"] for row in rows[-25:]]) < 0.5
    # Round-off does accumulate, far below the tolerance: visible, not zero.
    assert max(row["max_relative_parameter_difference"] for row in rows) > 0


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_two_callers_take_the_steps_of_one(splits, dtype):
    """At 2 BLAS threads a step's backward runs on two Python threads (the chain of input
    gradients here, each layer's weight gradients and Adam update on a helper, BLAS on one
    thread each): float32 gives the bytes of one caller; float64 (dgemm's sums depend on its
    threads) the same steps to rounding."""
    images, labels = splits[0]
    x = to_model_input(images[:512]).astype(dtype)
    batches = [(x[i : i + 128], labels[i : i + 128].astype(np.int64)) for i in range(0, 512, 128)]
    initial = train.initial_weights(0, SEED)
    trained = {}
    try:
        for threads in (1, 2):
            set_threads(threads)
            trainer = train_numpy.NumpyTrainer(initial, SEED, 1e-3, dtype)
            losses = [trainer.step(*batch) for _ in range(3) for batch in batches]
            assert (trainer._helper is not None) == (threads == 2)  # the two-caller path ran
            trained[threads] = losses, trainer.parameters()
    finally:
        set_threads(1)
    (losses_one, one), (losses_two, two) = trained[1], trained[2]
    assert losses_two[-1] < losses_two[0]  # it learns
    assert losses_two == (losses_one if dtype == np.float32 else pytest.approx(losses_one, 1e-12))
    for name in SEED.parameter_shapes:
        assert not np.array_equal(two[name], initial[name]), name  # every parameter moved
        if dtype == np.float32:
            assert two[name].tobytes() == one[name].tobytes(), name
        else:
            assert max_norm_relative_error(two[name], one[name]) <= 1e-12, name


def test_loops_network_takes_the_same_steps(splits):
    set_threads(1)
    settings = train.TrainSettings(1, 4, 0.001, 0, "cpu", 8)
    initial = train.initial_weights(0, SEED)
    rows = train_numpy.side_by_side(settings, splits[0], initial, SEED, np.float64, 2, "loops")
    assert_in_step(rows, 2)
    im2col_rows = train_numpy.side_by_side(settings, splits[0], initial, SEED, np.float64, 2)
    for loops_row, im2col_row in zip(rows, im2col_rows, strict=True):
        assert loops_row["loss_numpy"] == pytest.approx(im2col_row["loss_numpy"], rel=1e-12)


# Two non-default networks: overlapping and non-overlapping max pooling; average pooling and two
# hidden layers.
POOL_NETWORKS = {
    "maxpool": {
        "layers": [
            {"conv": 8, "kernel": 5, "padding": 2},
            {"pool": "max", "kernel": 3, "stride": 2, "padding": 1},
            {"conv": 16, "kernel": 3, "stride": 2},
            {"pool": "max", "kernel": 2},
        ],
        "hidden": [32],
    },
    "avgpool": {
        "layers": [
            {"conv": 6, "kernel": 3, "stride": 2, "padding": 1},
            {"pool": "avg", "kernel": 3, "stride": 1, "padding": 1},
            {"conv": 12, "kernel": 3, "stride": 2},
        ],
        "hidden": [24, 16],
    },
}


@pytest.mark.parametrize("name", POOL_NETWORKS)
def test_training_of_pooling_networks_follows_torch_in_float64(splits, name):
    set_threads(1)
    architecture = build(POOL_NETWORKS[name], (1, 28, 28), 10)
    initial = train.initial_weights(CHECK.seed, architecture)
    rows = train_numpy.side_by_side(CHECK, splits[0], initial, architecture, np.float64, 100)
    assert_in_step(rows, 100)
    assert np.mean([row["loss_numpy"] for row in rows[-25:]]) < np.mean(
        [row["loss_numpy"] for row in rows[:5]]
    )
    loops_settings = train.TrainSettings(1, 4, 0.001, 0, "cpu", 8)
    loops = train_numpy.side_by_side(
        loops_settings, splits[0], initial, architecture, np.float64, 2, "loops"
    )
    assert_in_step(loops, 2)


def test_batches_follow_the_torch_trainers_orders():
    steps = list(train_numpy.batches(10, 2, 4, seed=1))
    assert [epoch for epoch, _ in steps] == [1, 1, 1, 2, 2, 2]
    assert [len(batch) for _, batch in steps] == [4, 4, 2] * 2
    first, second = train.epoch_orders(10, 2, seed=1)
    np.testing.assert_array_equal(np.concatenate([batch for _, batch in steps[:3]]), first)
    np.testing.assert_array_equal(np.concatenate([batch for _, batch in steps[3:]]), second)


@pytest.mark.parametrize("block", [1, 3, None])
def test_twin_steps_in_blocks_give_the_numbers_of_steps_in_turn(splits, block, monkeypatch):
    """NumPy's steps a block ahead of PyTorch's: every step's losses and parameter difference
    are those of stepping the two in turn (None: the block the kept copies' budget allows, 2
    steps here), including a last block that is not full."""
    set_threads(1)
    monkeypatch.setattr(train_numpy, "TWIN_KEPT_BYTES", 2 * 4 * SEED.parameter_count + 1)
    images, labels = splits[0]
    data = train_numpy.prepare(images[:112], labels[:112], np.float32)
    pairs = [(data.x[i : i + 16], data.labels[i : i + 16]) for i in range(0, 112, 16)]
    initial = train.initial_weights(0, SEED)

    def trainers():
        return (
            train_numpy.NumpyTrainer(initial, SEED, 0.001, np.float32),
            train_numpy.TorchTrainer(initial, SEED, 0.001, np.float32),
        )

    numpy_side, torch_side = trainers()
    expected = []
    for x, y in pairs:
        loss_numpy, loss_torch = numpy_side.step(x, y), torch_side.step(x, y)
        difference = train_numpy.max_relative_difference(
            numpy_side.parameters(), torch_side.parameters()
        )
        expected.append((16, loss_numpy, loss_torch, difference))
    twin = list(train_numpy.twin_steps(*trainers(), iter(pairs), block))
    actual = [(s.images, s.loss_numpy, s.loss_torch, s.parameter_difference) for s in twin]
    assert actual == expected
    assert len({difference for *_, difference in expected}) == len(pairs)  # each step its own
    assert all(step.seconds > 0 for step in twin)
    alone = list(train_numpy.twin_steps(trainers()[0], None, pairs, block))
    assert [(s.loss_numpy, s.loss_torch) for s in alone] == [(e[1], None) for e in expected]


def test_train_numpy_float32_run_has_the_torch_metrics_and_a_row_per_step(splits):
    set_threads(1)
    settings = train.TrainSettings(2, 32, 0.001, 0, "cpu", 512)
    initial = train.initial_weights(0, SEED)
    run = train_numpy.train_numpy(settings, splits[0], splits[1], initial, SEED, np.float32)
    weights, history, rows = run.weights, run.history, run.steps
    assert list(weights) == list(SEED.parameter_shapes)
    assert all(value.dtype == np.float32 for value in weights.values())
    assert [tuple(row) for row in history] == [train.METRIC_COLUMNS] * 2
    assert [row["epoch"] for row in history] == [1, 2]
    assert history[-1]["train_loss"] < history[0]["train_loss"]
    assert history[-1]["test_accuracy"] > 0.5
    assert [row["step"] for row in rows] == list(range(1, 33))
    assert {row["dtype"] for row in rows} == {"float32"}
    # float32 round-off, amplified by Adam where a gradient is near eps (its update is
    # g / (|g| + eps) * lr, so a tiny gradient's relative error moves a weight by up to lr):
    # measured about 1.5e-4 after step 1 and below 5e-4 after 32 steps.
    assert all(0 < row["max_relative_parameter_difference"] < 3e-3 for row in rows)
    assert all(row["loss_relative_difference"] < 1e-5 for row in rows)
    torch_model, torch_history = torch_trainer.train(settings, SEED, splits[0], splits[1])
    for name, tensor in torch_model.state_dict().items():
        np.testing.assert_array_equal(run.torch_weights[name], tensor.numpy(), err_msg=name)
    # The torch side is the torch trainer's own run (same start, same batches): same losses.
    for epoch, torch_row in enumerate(torch_history):
        loss_sum = 0.0
        for row in rows[16 * epoch : 16 * (epoch + 1)]:
            loss_sum += row["loss_torch"] * 32
        assert loss_sum / 512 == torch_row["train_loss"]
    for name, value in train.initial_weights(0, SEED).items():  # the start was not stepped in place
        np.testing.assert_array_equal(initial[name], value)
    assert history[-1]["test_accuracy"] == pytest.approx(
        torch_history[-1]["test_accuracy"], abs=0.02
    )


def run_numpy_training_step(folder, mnist_dir, threads=1):
    """The train_numpy step on 256 images, 1 epoch, 5 float64 check steps; its outputs."""
    from cnnbench.steps import train_numpy as step

    folder.mkdir(exist_ok=True)
    save_weights(folder / "init.npz", train.initial_weights(0, SEED), SEED)
    files = {
        "train_images": "train-images-idx3-ubyte.gz",
        "train_labels": "train-labels-idx1-ubyte.gz",
        "test_images": "t10k-images-idx3-ubyte.gz",
        "test_labels": "t10k-labels-idx1-ubyte.gz",
    }
    out = {
        "metrics": folder / "metrics.csv",
        "steps": folder / "steps.csv",
        "weights": folder / "weights_numpy.npz",
        "manifest": folder / "manifest_numpy.json",
        "summary": folder / "summary.json",
    }
    train_config = {"epochs": 1, "batch_size": 128, "lr": 0.001, "seed": 0, "device": "cpu"}
    run_step(
        step,
        input={**{r: mnist_dir / f for r, f in files.items()}, "init": folder / "init.npz"},
        output=out,
        settings={
            # train.threads is the PyTorch training's: train_numpy runs on its own
            "train": {**train_config, "limit": 256, "threads": 2},
            "train_numpy": {"dtype": "float32", "check_steps": 5, "threads": threads},
            "dataset_name": "MNIST",
            "architecture": SEED.to_dict(),
        },
    )
    return out


def test_step_writes_tables_weights_and_manifest(tmp_path, mnist_dir):
    out = run_numpy_training_step(tmp_path, mnist_dir)
    with open(out["steps"]) as stream:
        rows = list(csv.DictReader(stream))
    # 5 float64 check steps (256 images, batch 128: 2 an epoch, so into the orders of epoch 3),
    # then the 2 steps of the float32 run.
    assert [(r["run"], r["dtype"], r["step"], r["epoch"]) for r in rows] == [
        ("check", "float64", "1", "1"),
        ("check", "float64", "2", "1"),
        ("check", "float64", "3", "2"),
        ("check", "float64", "4", "2"),
        ("check", "float64", "5", "3"),
        ("training", "float32", "1", "1"),
        ("training", "float32", "2", "1"),
    ]
    assert all(float(r["max_relative_parameter_difference"]) <= 1e-9 for r in rows[:5])
    with open(out["metrics"]) as stream:
        (metrics,) = list(csv.DictReader(stream))
    assert tuple(metrics) == train.METRIC_COLUMNS
    manifest = json.loads(out["manifest"].read_text())
    assert manifest["weights_file"] == "weights_numpy.npz"
    assert manifest["sha256"] == hashlib.sha256(out["weights"].read_bytes()).hexdigest()
    assert manifest["train_config"]["train_numpy"] == {
        "dtype": "float32",
        "check_steps": 5,
        "threads": 1,
    }
    assert manifest["final_metrics"]["test_accuracy"] == float(metrics["test_accuracy"])
    assert list(load_weights(out["weights"], SEED)) == list(SEED.parameter_shapes)
    summary = json.loads(out["summary"].read_text())
    assert summary["test_images"] == 10000
    # the PyTorch model and the NumPy network evaluate the same weights: at most a near-tie apart
    assert summary["test_accuracy_numpy"] == pytest.approx(
        float(metrics["test_accuracy"]), abs=2e-4
    )
    assert summary["test_accuracy_torch"] == pytest.approx(summary["test_accuracy_numpy"], abs=0.05)
    assert summary["same_predictions"] >= 9000
    assert summary["check"]["max_relative_parameter_difference"] <= 1e-9


def test_numpy_weights_do_not_depend_on_the_thread_count(tmp_path, mnist_dir):
    # train_numpy.threads defaults to 1 (it packs beside the loop backend's shards): that may
    # not change the NumPy-trained weights (OpenBLAS splits a product's rows and columns between
    # its threads, never the sums), only the PyTorch twin's last bits
    one = run_numpy_training_step(tmp_path / "one", mnist_dir, threads=1)
    two = run_numpy_training_step(tmp_path / "two", mnist_dir, threads=2)
    assert one["weights"].read_bytes() == two["weights"].read_bytes()
    manifests = [json.loads(out["manifest"].read_text()) for out in (one, two)]
    assert [m["train_config"]["train_numpy"]["threads"] for m in manifests] == [1, 2]
