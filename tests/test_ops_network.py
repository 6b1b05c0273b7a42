"""The NumPy network, both variants, against the torch SimpleCNN on real MNIST test images."""

from __future__ import annotations

import doctest
import subprocess
import sys

import numpy as np
import pytest
import torch

from cnnbench.common.numerics import max_norm_relative_error
from cnnbench.data import load_split, to_model_input
from cnnbench.network.architecture import SEED
from cnnbench.network.torch_model import model_from_weights
from cnnbench.network.weights import WeightsError, save_weights
from cnnbench.ops import INPUT_GRADIENT, VARIANTS, Im2colInference, Network, cross_entropy
from cnnbench.steps.gradcheck import torch_gradients

TENSORS = (*SEED.parameter_shapes, INPUT_GRADIENT)
# the loop network runs at Python speed (~0.2 s per image forward): it gets fewer images
IMAGES = {"loops": 2, "im2col": 8}


@pytest.fixture(scope="module")
def arrays() -> dict[str, np.ndarray]:
    """Random float32 weights, He-scaled (sqrt(6 / fan_in)) so logits are O(1) like a trained net."""
    rng = np.random.default_rng(12)
    weights = {}
    for name, shape in SEED.parameter_shapes.items():
        fan_in = np.prod(SEED.parameter_shapes[name.replace(".bias", ".weight")][1:])
        weights[name] = (rng.uniform(-1, 1, shape) * np.sqrt(6 / fan_in)).astype(np.float32)
    return weights


@pytest.fixture(scope="module")
def mnist(mnist_dir) -> tuple[np.ndarray, np.ndarray]:
    """The first 8 test images as model input (float32) and their labels."""
    images, labels = load_split(
        mnist_dir / "t10k-images-idx3-ubyte.gz", mnist_dir / "t10k-labels-idx1-ubyte.gz", SEED
    )
    return to_model_input(images[:8]), labels[:8].astype(np.int64)


@pytest.fixture(scope="module")
def float64_results(arrays, mnist) -> dict[str, tuple]:
    """(logits, loss, gradients) of each variant in float64 on its share of the images."""
    x, labels = mnist
    results = {}
    for variant in VARIANTS:
        count = IMAGES[variant]
        network = Network(arrays, SEED, variant, np.float64)
        logits = network.logits(x[:count].astype(np.float64))
        loss, grads = network.loss_and_gradients(x[:count].astype(np.float64), labels[:count])
        results[variant] = (logits, loss, grads)
    return results


@pytest.mark.parametrize("variant", VARIANTS)
def test_float32_logits_match_torch(arrays, mnist, variant):
    x = mnist[0][: IMAGES[variant]]
    logits = Network(arrays, SEED, variant).logits(x)
    with torch.inference_mode():
        expected = model_from_weights(arrays, SEED)(torch.from_numpy(x)).numpy()
    assert logits.dtype == np.float32 and logits.shape == (len(x), 10)
    assert np.abs(expected).max() > 0.1  # the logits are real values
    assert np.abs(logits - expected).max() <= 1e-4


@pytest.mark.parametrize("variant", VARIANTS)
def test_float64_loss_and_gradients_match_torch_autograd(arrays, mnist, float64_results, variant):
    x, labels = mnist[0][: IMAGES[variant]].astype(np.float64), mnist[1][: IMAGES[variant]]
    logits, loss, grads = float64_results[variant]
    expected = torch_gradients(arrays, SEED, x, labels, torch.float64)
    with torch.inference_mode():
        expected_logits = model_from_weights(arrays, SEED, torch.float64)(
            torch.from_numpy(x)
        ).numpy()
    assert max_norm_relative_error(logits, expected_logits) <= 1e-12
    assert loss == pytest.approx(cross_entropy(expected_logits, labels), rel=1e-12)
    assert list(grads) == list(TENSORS)
    for name in TENSORS:
        assert grads[name].shape == expected[name].shape, name
        assert np.abs(expected[name]).max() > 0, name
        assert max_norm_relative_error(grads[name], expected[name]) <= 1e-10, name


def test_variants_agree_to_round_off(arrays, mnist, float64_results):
    count = IMAGES["loops"]
    x, labels = mnist[0][:count].astype(np.float64), mnist[1][:count]
    loops_logits, loops_loss, loops_grads = float64_results["loops"]
    loss, grads = Network(arrays, SEED, "im2col", np.float64).loss_and_gradients(x, labels)
    assert max_norm_relative_error(loops_logits, float64_results["im2col"][0][:count]) <= 1e-13
    assert loops_loss == pytest.approx(loss, rel=1e-13)
    for name in TENSORS:
        assert max_norm_relative_error(loops_grads[name], grads[name]) <= 1e-12, name


@pytest.mark.parametrize("variant", VARIANTS)
def test_float32_network_keeps_float32(arrays, mnist, variant):
    x, labels = mnist[0][:1], mnist[1][:1]
    loss, grads = Network(arrays, SEED, variant).loss_and_gradients(x, labels)
    assert loss.dtype == np.float32 and loss > 0
    assert {name: g.dtype for name, g in grads.items()} == dict.fromkeys(
        TENSORS, np.dtype(np.float32)
    )


def test_from_file_and_bad_construction(arrays, mnist, tmp_path):
    path = tmp_path / "weights.npz"
    save_weights(path, arrays, SEED)
    x = mnist[0][:2]
    np.testing.assert_array_equal(
        Network.from_file(path, SEED).logits(x), Network(arrays, SEED).logits(x)
    )
    with pytest.raises(
        ValueError, match=r"variant must be one of \['im2col', 'loops'\], got 'fast'"
    ):
        Network(arrays, SEED, "fast")
    with pytest.raises(WeightsError, match=r"no fc2\.bias \(10,\)"):
        Network({name: a for name, a in arrays.items() if name != "fc2.bias"}, SEED)
    with pytest.raises(ValueError, match=r"mixed dtypes \(x is float64, w is float32\)"):
        Network(arrays, SEED).logits(x.astype(np.float64))


def test_ops_import_numpy_only():
    """The architecture rule: ops (and the weights module it reads) never load torch."""
    code = "import sys, cnnbench.ops; sys.exit('torch' in sys.modules)"
    assert subprocess.run([sys.executable, "-c", code], check=False).returncode == 0


def test_docstring_example_runs():
    import cnnbench.ops

    result = doctest.testmod(cnnbench.ops)
    assert result.attempted >= 3 and result.failed == 0


@pytest.mark.parametrize("batch", [1, 8, 11])
def test_im2col_inference_equals_the_im2col_network(arrays, mnist, batch):
    """The inference-tuned forward computes the same logits as Network("im2col"), any batch size
    (chunks of CONV_CHUNK images with a remainder), repeatedly with its reused buffers."""
    x = np.concatenate([mnist[0]] * 2)[:batch]
    fast = Im2colInference(arrays, SEED)
    expected = Network(arrays, SEED, "im2col", np.float32).logits(x)
    reference = Network(arrays, SEED, "im2col", np.float64).logits(x.astype(np.float64))
    for _ in range(2):
        logits = fast.logits(x)
        assert logits.dtype == np.float32 and logits.shape == (batch, 10)
        # float32 sums in another order: equal to float32 round-off, both near the float64 truth
        np.testing.assert_allclose(logits, expected, rtol=0, atol=2e-5)
        assert np.abs(logits - reference).max() < 2e-5
    assert fast.logits(x) is not fast.logits(x)
