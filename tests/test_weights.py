import hashlib
import zipfile

import numpy as np
import pytest
import torch

from cnnbench.geometry import PARAMETER_SHAPES
from cnnbench.model import SimpleCNN, model_from_weights
from cnnbench.weights import WeightsError, load_weights, save_weights


def test_state_dict_matches_architecture(init_arrays):
    assert {name: a.shape for name, a in init_arrays.items()} == PARAMETER_SHAPES


def test_npz_round_trip_is_exact_and_deterministic(tmp_path, init_arrays):
    first = save_weights(tmp_path / "a.npz", init_arrays)
    second = save_weights(tmp_path / "b.npz", init_arrays)
    assert first == second == hashlib.sha256((tmp_path / "a.npz").read_bytes()).hexdigest()
    loaded = load_weights(tmp_path / "a.npz")
    assert list(loaded) == list(PARAMETER_SHAPES)
    for name, array in init_arrays.items():
        assert loaded[name].dtype == np.float32
        np.testing.assert_array_equal(loaded[name], array)
    # Plain NumPy reads it too, without pickle.
    with np.load(tmp_path / "a.npz", allow_pickle=False) as archive:
        assert sorted(archive.files) == sorted(PARAMETER_SHAPES)


def test_npz_into_fresh_model_reproduces_logits(tmp_path, init_arrays):
    save_weights(tmp_path / "w.npz", init_arrays)
    x = torch.rand(16, 1, 28, 28, generator=torch.Generator().manual_seed(0))
    original = SimpleCNN()
    original.load_state_dict({k: torch.from_numpy(v) for k, v in init_arrays.items()})
    with torch.inference_mode():
        assert torch.equal(
            original.eval()(x), model_from_weights(load_weights(tmp_path / "w.npz"))(x)
        )


def test_rejects_wrong_shape(tmp_path, init_arrays):
    init_arrays["fc1.weight"] = init_arrays["fc1.weight"][:, :100]
    np.savez(tmp_path / "w.npz", **init_arrays)
    with pytest.raises(
        WeightsError, match=r"fc1.weight has shape \(250, 100\), expected \(250, 2048\)"
    ):
        load_weights(tmp_path / "w.npz")


def test_rejects_missing_and_extra_keys(tmp_path, init_arrays):
    init_arrays.pop("conv2.bias")
    init_arrays["conv4.weight"] = np.zeros(3, np.float32)
    np.savez(tmp_path / "w.npz", **init_arrays)
    with pytest.raises(
        WeightsError, match=r"missing \['conv2.bias'\], unexpected \['conv4.weight'\]"
    ):
        load_weights(tmp_path / "w.npz")


def test_rejects_wrong_dtype(tmp_path, init_arrays):
    init_arrays["conv1.bias"] = init_arrays["conv1.bias"].astype(np.float64)
    np.savez(tmp_path / "w.npz", **init_arrays)
    with pytest.raises(WeightsError, match=r"conv1\.bias has dtype float64, expected float32"):
        load_weights(tmp_path / "w.npz")


def test_rejects_truncated_file(tmp_path, init_arrays):
    save_weights(tmp_path / "w.npz", init_arrays)
    data = (tmp_path / "w.npz").read_bytes()
    (tmp_path / "cut.npz").write_bytes(data[: len(data) // 2])
    with pytest.raises(WeightsError, match=r"cut\.npz"):
        load_weights(tmp_path / "cut.npz")


def test_rejects_pickle_bearing_file(tmp_path, init_arrays):
    arrays = dict(init_arrays)
    arrays["conv1.bias"] = np.array([{"evil": 1}], dtype=object)
    np.savez(tmp_path / "w.npz", **arrays)
    with pytest.raises(WeightsError, match="pickled objects"):
        load_weights(tmp_path / "w.npz")


def test_rejects_missing_and_non_zip_files(tmp_path):
    with pytest.raises(WeightsError, match="no such weights file"):
        load_weights(tmp_path / "absent.npz")
    (tmp_path / "text.npz").write_text("not a zip")
    with pytest.raises(WeightsError, match=r"not a readable \.npz"):
        load_weights(tmp_path / "text.npz")


def test_saved_members_have_fixed_timestamps(tmp_path, init_arrays):
    save_weights(tmp_path / "w.npz", init_arrays)
    with zipfile.ZipFile(tmp_path / "w.npz") as archive:
        assert {info.date_time for info in archive.infolist()} == {(1980, 1, 1, 0, 0, 0)}
