"""The NumPy network on many architectures: random stacks of convolution and max/average pooling
layers and 0-2 hidden layers, both variants against the torch network built from the same
Architecture, in float64, forward and backward; and the gradient check on non-default networks."""

from __future__ import annotations

from pathlib import Path
from unittest import mock

import numpy as np
import pytest
import torch
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st

from cnnbench.common.numerics import max_norm_relative_error
from cnnbench.data import load_split, to_model_input
from cnnbench.network.architecture import SEED, build
from cnnbench.network.torch_model import model_from_weights
from cnnbench.ops import INPUT_GRADIENT, VARIANTS, Network, cross_entropy, cross_entropy_backward
from cnnbench.ops import network as ops_network
from cnnbench.steps import gradcheck
from cnnbench.training.seeding import initial_weights

# multiply-adds per image a drawn network may cost: the loop variant runs at Python speed
MAC_BUDGET = {"loops": 40_000, "im2col": 2_000_000}
TORCH_TOLERANCE = 1e-10

# The shipped LeNet-5 example, and a network of overlapping windows, as config.yaml's model section.
LENET5 = yaml.safe_load((Path(__file__).parents[1] / "examples" / "lenet5.yaml").read_text())[
    "model"
]
OVERLAPPING = {
    "layers": [
        {"conv": 4, "kernel": 3, "stride": 1, "padding": 1},
        {"pool": "max", "kernel": 3, "stride": 2, "padding": 1},
        {"conv": 8, "kernel": 3, "stride": 2},
        {"pool": "avg", "kernel": 3, "stride": 1, "padding": 1},
    ],
    "hidden": [],
}


@st.composite
def models(draw, input_size: tuple[int, int], channels: int, budget: int) -> dict:
    """A config ``model`` section: 1-5 conv/max/avg layers (kernels 1-7, strides 1-3, padding 0-3,
    at most half the kernel for pooling, 1-64 channels), then 0-2 hidden layers, every layer
    valid for its input and the whole network within ``budget`` multiply-adds per image."""
    height, width = input_size
    layers = []
    for _ in range(draw(st.integers(1, 5))):
        kind = draw(st.sampled_from(["conv", "max", "avg"]))
        kernel = draw(st.integers(1, 7))
        padding = draw(st.integers(0, 3 if kind == "conv" else min(3, kernel // 2)))
        kernel = min(kernel, min(height, width) + 2 * padding)  # at least one output pixel
        stride = draw(st.integers(1, 3))
        height = (height + 2 * padding - kernel) // stride + 1
        width = (width + 2 * padding - kernel) // stride + 1
        if kind == "conv":
            per_channel = height * width * channels * kernel * kernel
            out = draw(st.integers(1, max(1, min(64, budget // 5 // per_channel))))
            layers.append({"conv": out, "kernel": kernel, "stride": stride, "padding": padding})
            channels = out
        else:
            pool = {"pool": kind, "kernel": kernel, "stride": stride, "padding": padding}
            layers.append(pool)
    features = channels * height * width
    hidden = []
    for _ in range(draw(st.integers(0, 2))):
        hidden.append(draw(st.integers(1, max(1, min(32, budget // 4 // features)))))
        features = hidden[-1]
    return {"layers": layers, "hidden": hidden}


@st.composite
def networks(draw, budget: int) -> tuple:
    """(arrays, architecture, x, labels): a random architecture for images of 1-3 channels, 5-16 pixels a side and 2-10 classes,
    its seeded torch initialisation, and a batch of 2 images (exact 0s and 1s among the pixels,
    as in MNIST: ties for a max pooling on the input) with labels."""
    input_shape = (draw(st.integers(1, 3)), draw(st.integers(5, 16)), draw(st.integers(5, 16)))
    model = draw(models(input_shape[1:], input_shape[0], budget))
    architecture = build(model, input_shape, draw(st.integers(2, 10)))
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    x = np.clip(rng.uniform(-0.3, 1.3, (2, *input_shape)), 0, 1)
    labels = rng.integers(0, architecture.classes, 2)
    return initial_weights(int(rng.integers(2**31)), architecture), architecture, x, labels


def assert_matches_torch(arrays, architecture, variant, x, labels) -> None:
    """The variant's float64 logits, loss and every gradient equal torch's to rounding."""
    network = Network(arrays, architecture, variant, np.float64)
    logits, cache = network.forward(x)
    grads = network.backward(cache, cross_entropy_backward(logits, labels))
    with torch.inference_mode():
        model = model_from_weights(arrays, architecture, torch.float64)
        expected_logits = model(torch.from_numpy(x)).numpy()
    expected = gradcheck.torch_gradients(arrays, architecture, x, labels, torch.float64)
    assert logits.dtype == np.float64 and logits.shape == (len(x), architecture.classes)
    assert np.abs(expected_logits).max() > 0  # real values
    assert max_norm_relative_error(logits, expected_logits) <= TORCH_TOLERANCE
    assert cross_entropy(logits, labels) == pytest.approx(
        cross_entropy(expected_logits, labels), rel=1e-12
    )
    assert list(grads) == list(expected) == [*architecture.parameter_shapes, INPUT_GRADIENT]
    for name, gradient in grads.items():
        assert gradient.dtype == np.float64 and gradient.shape == expected[name].shape, name
        assert max_norm_relative_error(gradient, expected[name]) <= TORCH_TOLERANCE, name
    # training's backward: the first layer's dx not computed, every parameter's gradient the same
    training = network.backward(cache, cross_entropy_backward(logits, labels), input_gradient=False)
    assert list(training) == list(architecture.parameter_shapes)
    for name, gradient in training.items():
        np.testing.assert_array_equal(gradient, grads[name], err_msg=name)
    # on two threads (NumpyTrainer): handed over layer by layer, from the last, before the
    # chain passes the layer (the loops variant: all at the end); computed after the weights
    # changed, they are the same, as they read only the cache and the gradients
    handed = []
    left = network.backward(cache, cross_entropy_backward(logits, labels), False, handed.append)
    assert left == {}
    for value in network.parameters.values():
        value *= 3
    computed = [compute() for compute in handed]
    with_parameters = [layer.name for layer in architecture.layers if layer.parameter_count]
    if variant == "im2col":
        assert [list(part) for part in computed] == [
            [f"{name}.weight", f"{name}.bias"] for name in reversed(with_parameters)
        ]
    else:
        assert [list(part) for part in computed] == [list(architecture.parameter_shapes)]
    for part in computed:
        for name, gradient in part.items():
            np.testing.assert_array_equal(gradient, grads[name], err_msg=name)


@pytest.mark.parametrize("variant", VARIANTS)
@settings(max_examples=30, deadline=None)
@given(data=st.data())
def test_random_networks_match_torch_in_float64(variant, data):
    arrays, architecture, x, labels = data.draw(networks(MAC_BUDGET[variant]))
    assert_matches_torch(arrays, architecture, variant, x, labels)


@settings(max_examples=20, deadline=None)
@given(data=st.data())
def test_relu_backward_in_place_gives_the_bits_of_a_new_array(data):
    """backward computes each ReLU's gradient over the chain's own array where that has the
    activation's memory order: the float32 bits of a new array, the bias sums included."""
    arrays, architecture, _, _ = data.draw(networks(MAC_BUDGET["im2col"]))
    rng = np.random.default_rng(data.draw(st.integers(0, 2**32 - 1)))
    x = rng.uniform(0, 1, (33, *architecture.input_shape)).astype(np.float32)
    labels = rng.integers(0, architecture.classes, len(x))
    network = Network(arrays, architecture, "im2col", np.float32)
    logits, cache = network.forward(x)
    in_place = network.backward(cache, cross_entropy_backward(logits, labels))
    with mock.patch.object(ops_network, "relu_backward", lambda dy, x, out=None: dy * (x > 0)):
        new_arrays = network.backward(cache, cross_entropy_backward(logits, labels))
    assert any(gradient.any() for gradient in new_arrays.values())  # real values
    for name, gradient in new_arrays.items():
        np.testing.assert_array_equal(
            in_place[name].view(np.uint32), gradient.view(np.uint32), err_msg=name
        )


@pytest.fixture(scope="module")
def mnist(mnist_dir) -> tuple[np.ndarray, np.ndarray]:
    """The first 4 test images (uint8) and their labels."""
    images, labels = load_split(
        mnist_dir / "t10k-images-idx3-ubyte.gz", mnist_dir / "t10k-labels-idx1-ubyte.gz", SEED
    )
    return images[:4], labels[:4].astype(np.int64)


NAMED = {"lenet5": LENET5, "overlapping": OVERLAPPING}


@pytest.mark.parametrize("variant", VARIANTS)
@pytest.mark.parametrize("name", NAMED)
def test_named_networks_match_torch_on_mnist(mnist, variant, name):
    """Float64 exact to rounding; float32 logits within float32 rounding of torch's."""
    architecture = build(NAMED[name], (1, 28, 28), 10)
    arrays = initial_weights(0, architecture)
    x = to_model_input(mnist[0][:2])
    assert_matches_torch(arrays, architecture, variant, x.astype(np.float64), mnist[1][:2])
    logits = Network(arrays, architecture, variant).logits(x)
    with torch.inference_mode():
        expected = model_from_weights(arrays, architecture)(torch.from_numpy(x)).numpy()
    assert logits.dtype == np.float32
    assert np.abs(logits - expected).max() <= 1e-5 * max(1.0, np.abs(expected).max())


@pytest.mark.parametrize("variant", VARIANTS)
@settings(max_examples=10, deadline=None)
@given(data=st.data())
def test_stages_in_turn_are_the_forward_pass(variant, data):
    arrays, architecture, x, _ = data.draw(networks(MAC_BUDGET[variant]))
    network = Network(arrays, architecture, variant, np.float64)
    stages = network.stages()
    assert [name for name, _ in stages] == [layer.name for layer in architecture.layers]
    h = x
    for (_, stage), layer in zip(stages, architecture.layers, strict=True):
        h = stage(h)
        assert h.shape == (len(x), *layer.out_shape)
    np.testing.assert_array_equal(h, network.logits(x))


@pytest.mark.parametrize("name", NAMED)
def test_gradcheck_passes_on_non_default_networks(mnist, name):
    architecture = build(NAMED[name], (1, 28, 28), 10)
    rows, _ = gradcheck.check_gradients(
        initial_weights(0, architecture), architecture, mnist[0][:2], mnist[1][:2], 3, seed=0
    )
    tensors = gradcheck.tensors(architecture)
    assert len(tensors) == len(architecture.parameter_shapes) + 1
    assert len(rows) == len(tensors) * len(VARIANTS) * len(gradcheck.REFERENCES)
    assert all(row["passed"] for row in rows), [row for row in rows if not row["passed"]]
    float64 = [row["max_rel_err"] for row in rows if row["reference"] == "torch_float64"]
    assert max(float64) < 1e-12


def test_finite_differences_refuse_coordinates_that_move_a_max_pooling_winner(mnist):
    """Max pooling on the image itself: MNIST's saturated strokes (255) and blank background
    tie in most windows, and nudging a tied pixel up or down moves the window's winner: the
    one-sided derivatives differ there, so such coordinates are replaced (as ReLU kinks are)
    and the check still passes."""
    model = {"layers": [{"pool": "max", "kernel": 2}, {"conv": 3, "kernel": 3}], "hidden": []}
    architecture = build(model, (1, 28, 28), 10)
    arrays = initial_weights(0, architecture)
    network = Network(arrays, architecture, "im2col", np.float64)
    x = to_model_input(mnist[0][:2]).astype(np.float64)
    _, cache = network.forward(x)
    kinks = network.kinks(cache)
    assert len(kinks) == 2  # conv1's ReLU pattern, pool1's winners
    np.testing.assert_array_equal(
        kinks[1], torch.nn.functional.max_pool2d(torch.from_numpy(x), 2, return_indices=True)[1]
    )
    rows, replaced = gradcheck.check_gradients(
        arrays, architecture, mnist[0][:2], mnist[1][:2], 20, seed=0
    )
    assert replaced[INPUT_GRADIENT] > 20
    assert all(row["passed"] for row in rows)


def test_a_small_tensor_out_of_coordinates_is_checked_with_smaller_steps():
    """One conv channel whose every pre-activation is 5e-6 (blank image, bias 5e-6): +-1e-5 on
    its bias flips the ReLU, +-1e-6 does not. The bias's only coordinate is checked with it."""
    model = {"layers": [{"conv": 1, "kernel": 3}], "hidden": []}
    architecture = build(model, (1, 6, 6), 3)
    arrays = initial_weights(0, architecture)
    arrays["conv1.bias"][:] = 5e-6
    network = Network(arrays, architecture, "im2col", np.float64)
    x, labels = np.zeros((1, 1, 6, 6)), np.array([2])
    estimates, replaced = gradcheck.finite_difference_samples(
        network, x, labels, 1, np.random.default_rng(0), lambda: None
    )
    assert replaced["conv1.bias"] == 1
    (index,), (derivative,) = estimates["conv1.bias"]
    expected = network.loss_and_gradients(x, labels)[1]["conv1.bias"][index]
    assert abs(expected) > 1e-3
    assert derivative == pytest.approx(expected, rel=1e-6)
