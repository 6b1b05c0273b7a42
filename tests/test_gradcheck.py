"""The gradient-check step on small random weights and real MNIST test images."""

from __future__ import annotations

import csv
import dataclasses

import numpy as np
import pytest
from conftest import manifest_of, run_step

from cnnbench.common import numerics
from cnnbench.network.architecture import SEED
from cnnbench.ops import VARIANTS, Network, linear_backward
from cnnbench.steps import gradcheck

BATCH, SAMPLES = 2, 3


def run(weights_path, mnist_dir, out):
    run_step(
        gradcheck,
        input={
            "weights": weights_path,
            "manifest": manifest_of(weights_path),
            "test_images": mnist_dir / "t10k-images-idx3-ubyte.gz",
            "test_labels": mnist_dir / "t10k-labels-idx1-ubyte.gz",
        },
        output={"csv": out},
        settings={"batch_size": BATCH, "samples": SAMPLES, "seed": 0},
    )


def test_all_rows_pass(weights_path, mnist_dir, tmp_path, capsys):
    out = tmp_path / "gradcheck.csv"
    run(weights_path, mnist_dir, out)
    with open(out, newline="") as stream:
        reader = csv.DictReader(stream)
        rows = list(reader)
    assert tuple(reader.fieldnames) == gradcheck.COLUMNS
    assert len(rows) == 11 * 2 * 3  # tensors (10 parameters + input) x implementations x refs
    assert {(r["tensor"], r["implementation"], r["reference"]) for r in rows} == {
        (t, i, r) for t in gradcheck.tensors(SEED) for i in VARIANTS for r in gradcheck.REFERENCES
    }
    assert all(r["passed"] == "True" for r in rows)
    for row in rows:
        assert 0 <= float(row["max_rel_err"]) <= float(row["tolerance"])
        assert row["dtype"] == ("float32" if row["reference"] == "torch_float32" else "float64")
    # float64 against torch is round-off, far inside its tolerance: the comparison is real
    assert max(float(r["max_rel_err"]) for r in rows if r["reference"] == "torch_float64") < 1e-12
    assert "66/66 rows passed" in capsys.readouterr().err


def test_broken_gradient_fails_naming_the_row(weights_path, mnist_dir, tmp_path, monkeypatch):
    def scaled_dw(dy, x, w):
        dx, dw, db = linear_backward(dy, x, w)
        return dx, dw * 1.001, db

    broken = dataclasses.replace(VARIANTS["im2col"], linear_backward=scaled_dw)
    monkeypatch.setitem(VARIANTS, "im2col", broken)
    with pytest.raises(SystemExit) as failure:
        run(weights_path, mnist_dir, tmp_path / "gradcheck.csv")
    message = str(failure.value.code)
    assert "fc1.weight / im2col / torch_float64" in message
    assert "fc2.weight / im2col / finite_differences" in message
    assert "loops" not in message  # the intact implementation still passes
    with open(tmp_path / "gradcheck.csv", newline="") as stream:
        rows = list(csv.DictReader(stream))
    failed = {(r["tensor"], r["implementation"]) for r in rows if r["passed"] == "False"}
    assert failed == {("fc1.weight", "im2col"), ("fc2.weight", "im2col")}


def test_finite_differences_refuse_coordinates_that_cross_a_kink():
    rng = np.random.default_rng(0)
    arrays = {
        name: (rng.standard_normal(shape) * 0.05).astype(np.float32)
        for name, shape in SEED.parameter_shapes.items()
    }
    # a blank image and zero conv1 biases put every conv1 unit exactly on its kink (z = 0):
    # moving a conv1 weight changes nothing (its inputs are 0), moving a bias flips 196 units
    arrays["conv1.bias"][:] = 0
    network = Network(arrays, SEED, "im2col", np.float64)
    with pytest.raises(RuntimeError, match=r"conv1.bias: only 0 of its 32 coordinates keep every"):
        gradcheck.finite_difference_samples(
            network,
            np.zeros((1, 1, 28, 28)),
            np.array([3]),
            2,
            np.random.default_rng(1),
            lambda: None,
        )


def test_float32_tolerance_follows_float32_rounding(init_arrays, mnist_dir):
    """Confident predictions make dLoss/dlogits = softmax - onehot a near-cancellation, so every
    float32 gradient (torch's too) is off by more than 1e-4 of the tensor's scale; the float32
    tolerance then becomes 3x torch float32's own error against float64, and NumPy still passes."""
    images, labels = gradcheck.load_split(
        mnist_dir / "t10k-images-idx3-ubyte.gz", mnist_dir / "t10k-labels-idx1-ubyte.gz", SEED
    )
    confident = dict(init_arrays)
    # large logits, and labels the network agrees with: softmax of the label class is ~1 - 1e-6
    confident["fc2.weight"] = init_arrays["fc2.weight"] * np.float32(30000)
    x = gradcheck.to_model_input(images[:4])
    labels = (
        Network(confident, SEED, "im2col", np.float64).logits(x.astype(np.float64)).argmax(axis=1)
    )
    rows, _ = gradcheck.check_gradients(confident, SEED, images[:4], labels, samples=2, seed=0)
    float32_rows = [row for row in rows if row["reference"] == "torch_float32"]
    assert max(row["tolerance"] for row in float32_rows) > 1e-4  # rounding dominates somewhere
    x = gradcheck.to_model_input(images[:4])
    torch64 = gradcheck.torch_gradients(
        confident, SEED, x.astype(np.float64), labels[:4], gradcheck.torch.float64
    )
    torch32 = gradcheck.torch_gradients(confident, SEED, x, labels[:4], gradcheck.torch.float32)
    for row in float32_rows:
        rounding = numerics.max_norm_relative_error(torch32[row["tensor"]], torch64[row["tensor"]])
        assert row["tolerance"] == max(1e-4, 3 * rounding)
        assert row["passed"]
