"""Per-layer timings (cnnbench.bench.layers, step layer_times): every layer of every splittable
backend, adding up to the whole forward pass."""

from __future__ import annotations

import csv
import json
import subprocess
import sys

import numpy as np
import pytest

from cnnbench import backends
from cnnbench.bench import layers
from cnnbench.network.architecture import SEED, build

SPLIT = ["torch", "onnxruntime", "numpy_im2col", "numba_loops", "numpy_loops"]


@pytest.fixture(autouse=True)
def one_thread():
    """As the timed steps run (a second busy BLAS thread on a loaded machine distorts times)."""
    import torch
    from threadpoolctl import threadpool_limits

    before = torch.get_num_threads()
    with threadpool_limits(1):
        torch.set_num_threads(1)
        yield
    torch.set_num_threads(before)


def test_onnxruntime_nodes_map_to_layers():
    """Fused and rewritten nodes keep the layer's name among their words; flatten belongs to the
    first linear layer; inserted nodes belong to none (the caller puts them before)."""
    assert layers._layer_of("conv1_nchwc", SEED) == "conv1"
    assert layers._layer_of("fused fc1.gemm", SEED) == "fc1"
    assert layers._layer_of("fc2.gemm", SEED) == "fc2"
    assert layers._layer_of("flatten", SEED) == "fc1"
    assert layers._layer_of("ReorderOutput", SEED) is None
    assert layers._layer_of("conv10_nchwc", SEED) is None  # a word, not a prefix


@pytest.mark.parametrize("name", SPLIT)
def test_every_layer_is_timed_and_adds_up(name, weights_path, mnist_dir):
    """Each layer gets a positive time; the layers add up to the whole forward pass (within a
    factor 2 here: a loaded test machine; the report shows the real ratio and flags 15 %)."""
    from cnnbench.data import load_split, to_model_input

    images, _ = load_split(
        mnist_dir / "t10k-images-idx3-ubyte.gz", mnist_dir / "t10k-labels-idx1-ubyte.gz", SEED
    )
    x = to_model_input(images[:8])
    backend = backends.load(name, weights_path, SEED)
    size = 2 if name in backends.SLOW else 8
    for batch in (x[:1], x[:size]):
        seconds, whole = layers.layer_and_forward_seconds(
            backend, batch, passes=1 if name in backends.SLOW else 5, blocks=2
        )
        assert list(seconds) == [layer.name for layer in SEED.layers]
        assert all(value > 0 for value in seconds.values()), seconds
        assert 0.5 < sum(seconds.values()) / whole < 2, (seconds, whole)


def test_stages_are_used_where_a_backend_offers_them(weights_path):
    """A backend with Backend.stages() is split by its own callables, applied in order."""
    backend = backends.load("numpy_im2col", weights_path, SEED)
    calls = []

    def stage(name):
        def run(h):
            calls.append(name)
            return h + 1

        return run

    backend.stages = lambda: [(layer.name, stage(layer.name)) for layer in SEED.layers]
    assert layers.method_of(backend) == "stages"
    x = np.zeros((1, 1, 28, 28), np.float32)
    samples = layers.SPLITTERS["stages"](backend, x, 2)
    assert calls == [layer.name for layer in SEED.layers] * 2
    assert [list(s) for s in samples] == [[layer.name for layer in SEED.layers]] * 2


def test_step_writes_every_layer_of_every_split_backend(weights_path, mnist_dir, tmp_path):
    out = tmp_path / "layers.csv"
    job = {
        "input": {
            "weights": str(weights_path),
            "manifest": str(weights_path.with_name("manifest.json")),
            "test_images": str(mnist_dir / "t10k-images-idx3-ubyte.gz"),
            "test_labels": str(mnist_dir / "t10k-labels-idx1-ubyte.gz"),
        },
        "output": {"csv": str(out)},
        "settings": {
            "backends": ["torch", "onnxruntime", "numba_loops", "numpy_loops"],
            "threads": 1,
            "images": 3,
            "rounds": 1,
            "batch_size": 6,
            "loop_images": 1,
            "processes": 2,
        },
    }
    result = subprocess.run(
        [sys.executable, "-m", "cnnbench.steps.layer_times", json.dumps(job)],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    with open(out, newline="") as stream:
        rows = list(csv.DictReader(stream))
    keys = {(r["backend"], int(r["batch_size"]), r["layer"]) for r in rows}
    names = [layer.name for layer in SEED.layers]
    expected = {("torch", s, n) for s in (1, 6) for n in names}
    expected |= {("onnxruntime", s, n) for s in (1, 6) for n in names}
    expected |= {("numba_loops", s, n) for s in (1, 6) for n in names}
    expected |= {("numpy_loops", 1, n) for n in names}
    assert keys == expected and len(rows) == len(expected)
    assert {r["method"] for r in rows if r["backend"] == "numba_loops"} == {
        layers.METHODS["stages"]
    }
    assert {r["method"] for r in rows if r["backend"] == "torch"} == {layers.METHODS["torch"]}


def test_other_architectures_are_split_by_their_own_layers(tmp_path):
    """torch's split follows the architecture (pooling layers timed as layers of their own)."""
    from cnnbench.network.torch_model import Net

    architecture = build(
        {"layers": [{"conv": 4, "kernel": 3, "padding": 1}, {"pool": "max", "kernel": 2}],
         "hidden": [16]},
        (1, 28, 28),
        10,
    )  # fmt: skip
    from cnnbench.backends.pytorch import TorchBackend

    arrays = {k: v.detach().numpy() for k, v in Net(architecture).state_dict().items()}
    backend = TorchBackend(arrays, architecture)
    seconds, _ = layers.layer_and_forward_seconds(
        backend, np.zeros((2, 1, 28, 28), np.float32), passes=2, blocks=1
    )
    assert list(seconds) == ["conv1", "pool1", "fc1", "fc2"]
    assert all(value > 0 for value in seconds.values())
