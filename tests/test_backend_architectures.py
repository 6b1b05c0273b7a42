"""The float32 backends on many networks: random architectures against PyTorch in float64, each
backend's per-layer stages against its own predict, and a LeNet-5-style network trained on MNIST."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from conftest import mnist_splits
from random_architectures import random_architecture, random_weights

from cnnbench import backends
from cnnbench.common.runtime import set_threads
from cnnbench.data import to_model_input
from cnnbench.network.architecture import MNIST_INPUT_SHAPE, build
from cnnbench.network.torch_model import Net
from cnnbench.network.weights import save_weights
from cnnbench.ops.im2col_inference import CONV_CHUNK
from cnnbench.steps import train

FLOAT32 = ["torch", "onnxruntime", "numpy_im2col", "numba_loops"]
STAGED = ["torch", "numpy_im2col", "numba_loops"]
# float32 sums of up to a few thousand terms, against float64: relative to the largest logit
TOLERANCE = 1e-5
IMAGES = CONV_CHUNK + 3  # numpy_im2col's chunks, with a remainder
LENET5 = {
    "layers": [
        {"conv": 6, "kernel": 5, "padding": 2},
        {"pool": "max", "kernel": 2},
        {"conv": 16, "kernel": 5},
        {"pool": "max", "kernel": 2},
    ],
    "hidden": [120, 84],
}


def _load_all(names, arrays, architecture, folder) -> dict[str, backends.Backend]:
    path = folder / "weights.npz"
    save_weights(path, arrays, architecture)
    return {name: backends.load(name, path, architecture) for name in names}


def _float64_logits(arrays, architecture, x) -> np.ndarray:
    net = Net(architecture).double()
    net.load_state_dict({name: torch.from_numpy(value) for name, value in arrays.items()})
    with torch.no_grad():
        return net(torch.from_numpy(x).double()).numpy()


def _composed(backend: backends.Backend, x: np.ndarray) -> np.ndarray:
    stages = backend.stages()
    assert [name for name, _ in stages] == [layer.name for layer in backend.architecture.layers]
    for _, stage in stages:
        x = stage(x)
    return x


@pytest.mark.parametrize("seed", range(24))
def test_random_architectures_match_torch(seed, tmp_path):
    architecture = random_architecture(seed)
    arrays = random_weights(architecture, seed)
    # negative pixels too, so that a max pool's padding (-inf, never a padded 0) matters
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((IMAGES, *architecture.input_shape), dtype=np.float32)
    reference = _float64_logits(arrays, architecture, x)
    scale = np.abs(reference).max()
    # the input reaches the logits: they differ between images far beyond the tolerance
    assert np.ptp(reference, axis=0).max() > 100 * TOLERANCE * scale
    loaded = _load_all(FLOAT32, arrays, architecture, tmp_path)
    for name, backend in loaded.items():
        logits = backend.predict(x)
        assert logits.dtype == np.float32 and logits.shape == (IMAGES, architecture.classes)
        error = np.abs(logits - reference).max() / scale
        assert error <= TOLERANCE, f"{name}: {error:.1e} of the largest logit"
        if name in STAGED:
            np.testing.assert_array_equal(_composed(backend, x), logits, err_msg=name)
            np.testing.assert_array_equal(_composed(backend, x[:1]), backend.predict(x[:1]))


def test_padding_and_channels_of_the_input(tmp_path):
    """Negative images of 3 channels: a max pool's padding must never win (-inf, not 0), an
    average pool's counts as zeros, and the NCHW input becomes each backend's own layout."""
    model = {
        "layers": [
            {"pool": "max", "kernel": 3, "stride": 2, "padding": 1},
            {"conv": 5, "kernel": 2, "padding": 1},
            {"pool": "avg", "kernel": 3, "stride": 1, "padding": 1},
        ],
        "hidden": [3],
    }
    architecture = build(model, (3, 9, 11), 4)
    arrays = random_weights(architecture, 0)
    x = -1 - np.random.default_rng(0).random((IMAGES, 3, 9, 11), dtype=np.float32)
    reference = _float64_logits(arrays, architecture, x)
    scale = np.abs(reference).max()
    assert np.ptp(reference, axis=0).max() > 100 * TOLERANCE * scale
    for name, backend in _load_all(FLOAT32, arrays, architecture, tmp_path).items():
        logits = backend.predict(x)
        assert np.abs(logits - reference).max() <= TOLERANCE * scale, name
        if name in STAGED:
            np.testing.assert_array_equal(_composed(backend, x), logits, err_msg=name)


def test_random_architectures_cover_the_issue():
    """The drawn networks span what the issue asks for."""
    layers = [
        layer
        for architecture in map(random_architecture, range(24))
        for layer in architecture.feature_layers
    ]
    assert {layer.kind for layer in layers} == {"conv", "maxpool", "avgpool"}
    assert {layer.kernel[0] for layer in layers} == set(range(1, 8))
    assert {layer.stride for layer in layers} == {1, 2, 3}
    assert {layer.padding for layer in layers} == {0, 1, 2, 3}
    maxpools = [layer for layer in layers if layer.kind == "maxpool"]
    assert {layer.stride < layer.kernel[0] for layer in maxpools} == {True, False}  # overlap
    convs = [layer for layer in layers if layer.kind == "conv"]
    assert {layer.out_shape[0] % 4 == 0 for layer in convs} == {True, False}
    assert 1 in {layer.in_shape[0] for layer in convs} and 64 in {c.out_shape[0] for c in convs}
    hidden = [len(random_architecture(seed).linear_layers) - 1 for seed in range(24)]
    assert set(hidden) == {0, 1, 2}


def test_lenet5_predictions_equal_on_mnist(mnist_dir, tmp_path):
    """A LeNet-5-style network, trained briefly: every float32 backend predicts what torch
    predicts on 500 real test images."""
    set_threads(1)
    architecture = build(LENET5, MNIST_INPUT_SHAPE, 10)
    (train_split, (images, labels)) = mnist_splits(mnist_dir, 500)
    settings = train.TrainSettings(
        epochs=1, batch_size=32, lr=0.002, seed=0, device="cpu", limit=6000
    )
    model, _ = train.train(settings, architecture, train_split, (images, labels))
    arrays = {name: value.numpy() for name, value in model.state_dict().items()}
    loaded = _load_all(FLOAT32, arrays, architecture, tmp_path)
    x = to_model_input(images)
    expected = loaded["torch"].predict(x)
    assert (
        expected.argmax(axis=1) == labels
    ).mean() > 0.8  # trained, so predictions mean something
    for name, backend in loaded.items():
        logits = backend.predict(x)
        np.testing.assert_allclose(logits, expected, rtol=0, atol=1e-4, err_msg=name)
        np.testing.assert_array_equal(logits.argmax(axis=1), expected.argmax(axis=1), err_msg=name)
