import csv
import hashlib
import json

import numpy as np
import pytest
import torch
from conftest import mnist_splits, run_step
from test_network_architectures import LENET5

from cnnbench import backends
from cnnbench.common.errors import UserError
from cnnbench.common.runtime import set_threads
from cnnbench.network.architecture import MNIST_INPUT_SHAPE, SEED, build
from cnnbench.network.onnx_export import export_onnx
from cnnbench.network.torch_model import pick_device
from cnnbench.network.weights import load_weights, save_weights
from cnnbench.steps import export, train
from cnnbench.training import seeding as training

SMALL = train.TrainSettings(epochs=1, batch_size=32, lr=0.001, seed=3, device="cpu", limit=1024)


@pytest.fixture(scope="module")
def splits(mnist_dir):
    return mnist_splits(mnist_dir, 500)


def test_training_is_deterministic_and_learns(splits):
    set_threads(1)
    first, history = train.train(SMALL, SEED, *splits)
    second, _ = train.train(SMALL, SEED, *splits)
    for name, tensor in first.state_dict().items():
        assert torch.equal(tensor, second.state_dict()[name]), name
    different, _ = train.train(SMALL.__class__(**{**SMALL.__dict__, "seed": 4}), SEED, *splits)
    assert not torch.equal(first.state_dict()["fc2.weight"], different.state_dict()["fc2.weight"])
    (row,) = history
    assert row["epoch"] == 1 and set(row) == {*train.METRIC_COLUMNS, "device"}
    assert row["device"] == "cpu"
    # 1024 images, one epoch: far from converged, but well above chance (10%).
    assert row["test_accuracy"] > 0.6 and row["test_loss"] < 1.2


# LeNet-5 with its second pooling an average: both kinds of pooling, on CUDA too
POOLED = {**LENET5, "layers": [*LENET5["layers"][:3], {"pool": "avg", "kernel": 2, "stride": 2}]}


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
@pytest.mark.parametrize("architecture", [SEED, build(POOLED, MNIST_INPUT_SHAPE, 10)])
def test_training_on_cuda_repeats_to_the_bit_and_follows_the_cpu(splits, architecture):
    """``auto`` trains on CUDA where there is one: deterministically, in float32 (no TF32), with
    max and average pooling, handing back CPU weights whose losses are the CPU run's."""
    assert pick_device("auto").type == "cuda"
    on_cuda = SMALL.__class__(**{**SMALL.__dict__, "device": "auto"})
    first, (row,) = train.train(on_cuda, architecture, *splits)
    assert row["device"].startswith("cuda (")
    second, _ = train.train(on_cuda, architecture, *splits)
    for name, tensor in first.state_dict().items():
        assert tensor.device.type == "cpu", name
        assert torch.equal(tensor, second.state_dict()[name]), name
    set_threads(1)
    _, (on_cpu,) = train.train(SMALL, architecture, *splits)
    for column in ("train_loss", "test_loss", "test_accuracy"):
        assert row[column] == pytest.approx(on_cpu[column], abs=0.01), column


def test_training_starts_from_the_saved_initial_weights_and_keeps_the_shared_order(splits):
    set_threads(1)
    # lr 0: Adam moves nothing, so the trained weights are the start.
    frozen, _ = train.train(SMALL.__class__(**{**SMALL.__dict__, "lr": 0.0}), SEED, *splits)
    initial = training.initial_weights(SMALL.seed, SEED)
    assert list(initial) == list(SEED.parameter_shapes)
    for name, tensor in frozen.state_dict().items():
        np.testing.assert_array_equal(tensor.numpy(), initial[name], err_msg=name)
    assert not np.array_equal(
        initial["fc1.weight"], training.initial_weights(4, SEED)["fc1.weight"]
    )
    # One seeded permutation per epoch, the same on every call; epochs differ.
    first, second = training.epoch_orders(1000, 2, seed=3)
    np.testing.assert_array_equal(np.sort(first), np.arange(1000))
    assert not np.array_equal(first, second)
    again = list(training.epoch_orders(1000, 2, seed=3))
    np.testing.assert_array_equal(again[1], second)
    generator = torch.Generator().manual_seed(3)  # what the torch trainer always drew
    np.testing.assert_array_equal(first, torch.randperm(1000, generator=generator).numpy())
    np.testing.assert_array_equal(second, torch.randperm(1000, generator=generator).numpy())


def test_training_limit_beyond_dataset_is_an_error(splits):
    with pytest.raises(UserError, match=r"train\.limit 70000 exceeds the 60000 training images"):
        train.train(train.TrainSettings(1, 64, 0.001, 0, "cpu", 70000), SEED, *splits)


def test_train_then_export_steps_give_identical_npz_twice(tmp_path, mnist_dir):
    data = {
        "train_images": mnist_dir / "train-images-idx3-ubyte.gz",
        "train_labels": mnist_dir / "train-labels-idx1-ubyte.gz",
        "test_images": mnist_dir / "t10k-images-idx3-ubyte.gz",
        "test_labels": mnist_dir / "t10k-labels-idx1-ubyte.gz",
    }
    digests = []
    for run in ("a", "b"):
        out = tmp_path / run
        train_config = {
            "epochs": 1,
            "batch_size": 128,
            "lr": 0.001,
            "seed": 0,
            "device": "cpu",
            "limit": 512,
            "threads": 1,
        }
        model_files = {"checkpoint": out / "ck.pt", "metrics": out / "metrics.csv"}
        run_step(
            train,
            input=data,
            output={**model_files, "init": out / "init.npz"},
            settings={"train": train_config, "architecture": SEED.to_dict()},
        )
        run_step(
            export,
            input={**data, **model_files},
            output={
                "weights": out / "weights.npz",
                "onnx": out / "model.onnx",
                "manifest": out / "manifest.json",
            },
            settings={
                "train": train_config,
                "dataset_name": "MNIST",
                "architecture": SEED.to_dict(),
            },
        )
        digests.append(hashlib.sha256((out / "weights.npz").read_bytes()).hexdigest())
        manifest = json.loads((out / "manifest.json").read_text())
        assert manifest["sha256"] == digests[-1]
        assert manifest["architecture"] == SEED.to_dict()
        assert manifest["parameters"] == {
            k: {"shape": list(v), "dtype": "float32"} for k, v in SEED.parameter_shapes.items()
        }
        assert manifest["train_config"] == train_config
        assert (
            manifest["dataset"]["files"]["test_labels"]["md5"] == "ec29112dd5afa0611ce80d1b7f02629c"
        )
        assert manifest["versions"]["torch"].startswith("2.13.0")
        onnx_bytes = (out / "model.onnx").read_bytes()
        assert manifest["onnx"]["file"] == "model.onnx"
        assert manifest["onnx"]["sha256"] == hashlib.sha256(onnx_bytes).hexdigest()
        assert manifest["onnx"]["opset"] == 17
        # the file is the one the onnxruntime backend builds from the npz
        assert backends.load("onnxruntime", out / "weights.npz", SEED).model_bytes == onnx_bytes
        with open(out / "metrics.csv") as stream:
            (row,) = list(csv.DictReader(stream))
        assert manifest["final_metrics"]["test_accuracy"] == float(row["test_accuracy"])
        assert manifest["final_metrics"]["device"] == row["device"] == "cpu"
        # The npz holds exactly the checkpoint's tensors.
        state = torch.load(out / "ck.pt", weights_only=True)
        for name, array in load_weights(out / "weights.npz", SEED).items():
            np.testing.assert_array_equal(array, state[name].numpy())
        initial = training.initial_weights(0, SEED)
        for name, array in load_weights(out / "init.npz", SEED).items():
            np.testing.assert_array_equal(array, initial[name])
    assert digests[0] == digests[1]
    assert (tmp_path / "a" / "model.onnx").read_bytes() == (
        tmp_path / "b" / "model.onnx"
    ).read_bytes()
    assert (tmp_path / "a" / "manifest.json").read_bytes() == (
        tmp_path / "b" / "manifest.json"
    ).read_bytes()


def test_export_round_trip_check_catches_a_different_npz(tmp_path, splits, init_arrays):
    trained = init_arrays
    save_weights(
        tmp_path / "w.npz", {**trained, "fc2.bias": trained["fc2.bias"] + np.float32(1e-3)}, SEED
    )
    with pytest.raises(RuntimeError, match="logits differ from the trained model's by up to"):
        export.check_round_trip(trained, SEED, tmp_path / "w.npz", splits[1][0][:10])
    save_weights(tmp_path / "same.npz", trained, SEED)
    export.check_round_trip(trained, SEED, tmp_path / "same.npz", splits[1][0][:10])


def test_export_onnx_check_catches_a_different_model(tmp_path, splits, init_arrays):
    changed = {**init_arrays, "fc2.bias": init_arrays["fc2.bias"] + np.float32(1e-3)}
    export_onnx(tmp_path / "changed.onnx", changed, SEED)
    with pytest.raises(RuntimeError, match="ONNX Runtime's logits differ from torch's by"):
        export.check_onnx(init_arrays, SEED, tmp_path / "changed.onnx", splits[1][0][:10])
    export_onnx(tmp_path / "same.onnx", init_arrays, SEED)
    assert export.check_onnx(init_arrays, SEED, tmp_path / "same.onnx", splits[1][0][:10]) < 1e-5
