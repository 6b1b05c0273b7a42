"""The float32 backends on many networks: random architectures against PyTorch in float64, each
backend's per-layer stages against its own predict, and the LeNet-5-style example trained on
MNIST."""

from __future__ import annotations

import numpy as np
import torch
from conftest import mnist_splits
from hypothesis import given, settings
from hypothesis import strategies as st
from test_network_architectures import LENET5, networks

from cnnbench import backends
from cnnbench.common.runtime import set_threads
from cnnbench.data import to_model_input
from cnnbench.network.architecture import MNIST_INPUT_SHAPE, build
from cnnbench.network.torch_model import Net
from cnnbench.network.weights import save_weights
from cnnbench.ops.im2col_inference import CONV_CHUNK
from cnnbench.steps import train
from cnnbench.training.seeding import initial_weights

FLOAT32 = ["torch", "onnxruntime", "numpy_im2col", "numba_loops"]
STAGED = ["torch", "numpy_im2col", "numba_loops"]
# float32 sums of up to a few thousand terms, against float64: relative to the largest logit
TOLERANCE = 1e-5
IMAGES = CONV_CHUNK + 3  # numpy_im2col's chunks, with a remainder


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


@settings(max_examples=25, deadline=None)
@given(data=st.data())
def test_random_networks_match_torch(data, tmp_path_factory):
    """Random networks (``test_network_architectures.networks``: 1-5 conv/max/avg layers, kernels
    1-7, strides 1-3, padding 0-3, 1-64 channels, 0-2 hidden layers, up to 2 M multiply-adds)
    through every float32 backend, against torch in float64; stages against predict."""
    arrays, architecture, x, _ = data.draw(networks(2_000_000))
    arrays = {name: value.astype(np.float32) for name, value in arrays.items()}
    x = np.concatenate([x] * (IMAGES // len(x) + 1))[:IMAGES].astype(np.float32)
    reference = _float64_logits(arrays, architecture, x)
    scale = np.abs(reference).max()
    assert scale > 0  # real values
    loaded = _load_all(FLOAT32, arrays, architecture, tmp_path_factory.mktemp("weights"))
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
    arrays = initial_weights(0, architecture)
    x = -1 - np.random.default_rng(0).random((IMAGES, 3, 9, 11), dtype=np.float32)
    reference = _float64_logits(arrays, architecture, x)
    scale = np.abs(reference).max()
    assert np.ptp(reference, axis=0).max() > 100 * TOLERANCE * scale
    for name, backend in _load_all(FLOAT32, arrays, architecture, tmp_path).items():
        logits = backend.predict(x)
        assert np.abs(logits - reference).max() <= TOLERANCE * scale, name
        if name in STAGED:
            np.testing.assert_array_equal(_composed(backend, x), logits, err_msg=name)


def test_numba_blocked_convolutions(tmp_path):
    """Convolutions of a multiple of ``BLOCK_CHANNELS`` output channels go through numba_loops's
    outer-product blocks (windows read in place); odd geometries: 1x1, 2x2 and 5x5 kernels,
    strides 1 and 3, no padding or 2, numbers of positions that are and are not a multiple of
    ``BLOCK_POSITIONS``, one input channel and many, followed by a pooling layer."""
    from cnnbench.backends import numba_loops

    channels = numba_loops.BLOCK_CHANNELS
    model = {
        "layers": [
            {"conv": channels, "kernel": 2, "padding": 2},
            {"conv": 2 * channels, "kernel": 5, "stride": 3},
            {"pool": "avg", "kernel": 2, "stride": 1, "padding": 1},
            {"conv": channels, "kernel": 1},
            {"conv": 3, "kernel": 1},  # the general path between blocked layers
            {"conv": channels, "kernel": 3, "stride": 1, "padding": 1},
        ],
        "hidden": [7],
    }
    architecture = build(model, (1, 13, 10), 5)
    arrays = initial_weights(1, architecture)
    x = np.random.default_rng(1).random((IMAGES, 1, 13, 10), dtype=np.float32)
    reference = _float64_logits(arrays, architecture, x)
    scale = np.abs(reference).max()
    backend = _load_all(["numba_loops"], arrays, architecture, tmp_path)["numba_loops"]
    kinds = backend._table[:, numba_loops.KIND].tolist()
    assert kinds.count(numba_loops._CONV_BLOCKED) == 4
    positions = [layer.out_shape[1] * layer.out_shape[2] for layer in architecture.layers[:6]]
    assert any(n % numba_loops.BLOCK_POSITIONS for n in positions)
    logits = backend.predict(x)
    assert np.abs(logits - reference).max() <= TOLERANCE * scale
    np.testing.assert_array_equal(_composed(backend, x), logits)
    np.testing.assert_array_equal(_composed(backend, x[:1]), backend.predict(x[:1]))


def test_lenet5_predictions_equal_on_mnist(mnist_dir, tmp_path):
    """The LeNet-5-style example (examples/lenet5.yaml), trained briefly: every float32 backend
    predicts what torch predicts on 500 real test images."""
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
