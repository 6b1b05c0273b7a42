"""Every backend against the PyTorch reference on real test images; loading and input checks."""

from __future__ import annotations

import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch

from cnnbench import backends
from cnnbench.data import load_split, to_model_input
from cnnbench.network.architecture import SEED
from cnnbench.network.weights import WeightsError
from cnnbench.ops.im2col_inference import CONV_CHUNK

TOLERANCE = 1e-4
IMAGES = 2 * CONV_CHUNK + 4  # ~20, and numpy_im2col's chunks with a remainder
LOOP_IMAGES = 4  # numpy_loops takes ~0.3 s per image


@pytest.fixture(scope="session")
def test_images(mnist_dir: Path) -> tuple[np.ndarray, np.ndarray]:
    images, labels = load_split(
        mnist_dir / "t10k-images-idx3-ubyte.gz", mnist_dir / "t10k-labels-idx1-ubyte.gz", SEED
    )
    return to_model_input(images[:IMAGES]), labels[:IMAGES]


@pytest.fixture(scope="module")
def loaded(weights_path: Path) -> dict[str, backends.Backend]:
    return {name: backends.load(name, weights_path, SEED) for name in backends.NAMES}


@pytest.mark.parametrize("name", backends.NAMES)
def test_logits_match_torch(name, loaded, test_images):
    x = test_images[0][: LOOP_IMAGES if name == "numpy_loops" else IMAGES]
    reference = loaded["torch"].model(torch.from_numpy(x)).detach().numpy()
    logits = loaded[name].predict(x)
    assert logits.shape == (len(x), 10)
    assert logits.dtype == np.float32
    np.testing.assert_allclose(logits, reference, rtol=0, atol=TOLERANCE)
    np.testing.assert_array_equal(logits.argmax(axis=1), reference.argmax(axis=1))
    # logits spread well beyond the tolerance, so the comparison means something
    assert np.ptp(reference) > 100 * TOLERANCE


@pytest.mark.parametrize("name", ["torch", "numpy_im2col", "numba_loops"])
def test_batch_and_single_image_agree(name, loaded, test_images):
    x = test_images[0]
    batch = loaded[name].predict(x)
    singles = np.concatenate([loaded[name].predict(x[i : i + 1]) for i in range(len(x))])
    np.testing.assert_allclose(singles, batch, rtol=0, atol=1e-5)


@pytest.mark.parametrize("name", ["torch", "numpy_im2col", "numba_loops"])
def test_non_contiguous_input(name, loaded, test_images):
    strided = test_images[0][:6][::-2]
    assert not strided.flags.c_contiguous
    np.testing.assert_array_equal(
        loaded[name].predict(strided), loaded[name].predict(np.ascontiguousarray(strided))
    )


def test_numpy_im2col_returns_fresh_arrays(loaded, test_images):
    """It reuses internal buffers; a result must survive the next call."""
    backend = loaded["numpy_im2col"]
    first = backend.predict(test_images[0][:1])
    kept = first.copy()
    backend.predict(test_images[0][1:2])
    np.testing.assert_array_equal(first, kept)


def test_compile_time_reported_for_numba_only(loaded):
    for name, backend in loaded.items():
        assert backend.name == name
        if name == "numba_loops":
            assert backend.compile_s > 0
        else:
            assert backend.compile_s is None


@pytest.mark.parametrize("name", backends.NAMES)
@pytest.mark.parametrize(
    ("x", "problem"),
    [
        (np.zeros((2, 1, 28, 28), dtype=np.float64), "dtype float64"),
        (np.zeros((2, 28, 28), dtype=np.float32), "shape (2, 28, 28)"),
        (np.zeros((2, 3, 28, 28), dtype=np.float32), "shape (2, 3, 28, 28)"),
        (np.zeros((0, 1, 28, 28), dtype=np.float32), "shape (0, 1, 28, 28)"),
        ([[0.0]], "got list"),
    ],
)
def test_bad_input_rejected(name, loaded, x, problem):
    with pytest.raises(ValueError, match=r"float32 array of shape \(N, 1, 28, 28\)") as error:
        loaded[name].predict(x)
    assert problem in str(error.value)


def test_unknown_backend(weights_path):
    with pytest.raises(
        ValueError, match=r"unknown backend 'tensorflow'; choose one of torch, numpy_im2col"
    ):
        backends.load("tensorflow", weights_path, SEED)


def _write_npz(path: Path, arrays: dict[str, np.ndarray]) -> Path:
    np.savez(path, **arrays)
    return path


def test_bad_weights_rejected(tmp_path, weights_path, init_arrays):
    arrays = init_arrays
    wrong_shape = {**arrays, "fc1.weight": arrays["fc1.weight"][:, :100]}
    missing = {k: v for k, v in arrays.items() if k != "conv2.bias"}
    pickled = {**arrays, "conv1.bias": np.array([{"not": "numbers"}], dtype=object)}
    truncated = tmp_path / "truncated.npz"
    truncated.write_bytes(weights_path.read_bytes()[:5000])
    cases = {
        _write_npz(tmp_path / "shape.npz", wrong_shape): r"fc1\.weight has shape \(250, 100\)",
        _write_npz(tmp_path / "missing.npz", missing): r"no conv2\.bias \(64,\)",
        _write_npz(tmp_path / "pickled.npz", pickled): "pickled",
        truncated: "not a readable .npz",
        tmp_path / "absent.npz": "no such weights file",
    }
    for path, message in cases.items():
        with pytest.raises(WeightsError, match=message):
            backends.load("numpy_im2col", path, SEED)
    assert zipfile.is_zipfile(weights_path) and not zipfile.is_zipfile(truncated)


def test_numba_arrays_cache_line_aligned(loaded):
    """Its speed once depended on where NumPy happened to place its arrays (see the module)."""
    from cnnbench.backends.numba_loops import BIAS, IN_OFFSET, OUT_OFFSET, WEIGHT

    table, activations, parameters, scratch = loaded["numba_loops"]._arguments
    assert [a.ctypes.data % 64 for a in (activations, parameters, scratch)] == [0] * 3
    offsets = table[:, [IN_OFFSET, OUT_OFFSET, WEIGHT, BIAS]]
    assert (offsets % 16 == 0).all() and len(np.unique(offsets[:, 2:])) == 2 * len(table)


@pytest.mark.parametrize("name", ["torch", "numpy_im2col", "numba_loops", "numpy_loops"])
def test_stages_compose_to_predict(name, loaded, test_images):
    """One function per layer, named as the architecture's layers, their composition bit for bit
    predict (batch 1 and a batch across numpy_im2col's chunks); the first checks its input."""
    backend = loaded[name]
    stages = backend.stages()
    assert [stage for stage, _ in stages] == ["conv1", "conv2", "conv3", "fc1", "fc2"]
    for x in (test_images[0][:1], test_images[0][: 2 if name == "numpy_loops" else IMAGES]):
        a = x
        for _, stage in stages:
            a = stage(a)
        np.testing.assert_array_equal(a, backend.predict(x))
    with pytest.raises(ValueError, match="float32 array of shape"):
        stages[0][1](test_images[0].astype(np.float64))


def test_stages_not_provided(loaded):
    with pytest.raises(NotImplementedError, match="onnxruntime has no per-layer stages"):
        loaded["onnxruntime"].stages()
