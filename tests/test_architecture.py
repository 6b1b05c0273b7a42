"""The architecture value: shapes, parameters and multiply-adds from the config, checked against
PyTorch; bad architectures refused in one line naming the layer."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from torch.utils.flop_counter import FlopCounterMode

from cnnbench.common.errors import UserError
from cnnbench.network.architecture import (
    SEED,
    ArchitectureError,
    build,
    from_config,
    from_dict,
)
from cnnbench.network.torch_model import Net

LENET5 = {
    "layers": [
        {"conv": 6, "kernel": 5, "padding": 2},
        {"pool": "max", "kernel": 2},
        {"conv": 16, "kernel": 5},
        {"pool": "avg", "kernel": 2, "stride": 2},
    ],
    "hidden": [120, 84],
}
OVERLAPPING = {
    "layers": [
        {"conv": 3, "kernel": 7, "stride": 3, "padding": 3},
        {"pool": "max", "kernel": 3, "stride": 2, "padding": 1},
        {"conv": 5, "kernel": 1},
        {"pool": "avg", "kernel": 3, "stride": 1, "padding": 1},
    ],
    "hidden": [],
}


def test_seed_network_is_the_notebooks():
    assert SEED.parameter_shapes == {
        "conv1.weight": (32, 1, 3, 3),
        "conv1.bias": (32,),
        "conv2.weight": (64, 32, 3, 3),
        "conv2.bias": (64,),
        "conv3.weight": (128, 64, 3, 3),
        "conv3.bias": (128,),
        "fc1.weight": (250, 2048),
        "fc1.bias": (250,),
        "fc2.weight": (10, 250),
        "fc2.bias": (10,),
    }
    assert [layer.out_shape for layer in SEED.layers] == [
        (32, 14, 14),
        (64, 7, 7),
        (128, 4, 4),
        (250,),
        (10,),
    ]
    assert [layer.relu for layer in SEED.layers] == [True, True, True, True, False]


@pytest.mark.parametrize(
    "model", [SEED.model, LENET5, OVERLAPPING], ids=["seed", "lenet5", "pools"]
)
@pytest.mark.parametrize("input_shape", [(1, 28, 28), (1, 17, 23)])
def test_shapes_parameters_and_macs_match_torch(model, input_shape):
    architecture = build(model, input_shape, 7)
    net = Net(architecture)
    assert {k: tuple(v.shape) for k, v in net.state_dict().items()} == architecture.parameter_shapes
    assert architecture.parameter_count == sum(p.numel() for p in net.parameters())
    x = torch.zeros(3, *input_shape)
    with FlopCounterMode(display=False) as counter:
        logits = net(x)
    assert logits.shape == (3, 7)
    # FlopCounterMode counts 2 FLOPs per multiply-add, padded taps included, for the batch
    assert counter.get_total_flops() == 2 * 3 * architecture.macs
    for layer in architecture.layers:  # each layer's own output shape and MACs
        with FlopCounterMode(display=False) as counter:
            x = getattr(net, layer.name)(x if layer.kind != "linear" else x.flatten(1))
        assert tuple(x.shape[1:]) == layer.out_shape
        assert counter.get_total_flops() == 2 * 3 * layer.macs


def test_record_round_trips_through_json():
    architecture = build(LENET5, (1, 28, 28), 10)
    record = json.loads(json.dumps(architecture.to_dict()))
    assert from_dict(record) == architecture
    assert record["layers"][1] == {
        "name": "pool1",
        "kind": "maxpool",
        "in_shape": [6, 28, 28],
        "out_shape": [6, 14, 14],
        "relu": False,
        "kernel": [2, 2],
        "stride": 2,
        "padding": 0,
    }
    assert [layer.name for layer in architecture.layers] == [
        "conv1",
        "pool1",
        "conv2",
        "pool2",
        "fc1",
        "fc2",
        "fc3",
    ]


def test_first_linear_hwc_columns_reorder_the_flattening():
    architecture = build({"layers": [{"conv": 2, "kernel": 1}], "hidden": []}, (1, 2, 3), 4)
    weight = np.arange(4 * 12).reshape(4, 12)
    hwc = architecture.first_linear_hwc_columns(weight)
    features = np.arange(12).reshape(2, 2, 3)  # (C, H, W)
    np.testing.assert_array_equal(
        hwc @ features.transpose(1, 2, 0).reshape(-1), weight @ features.reshape(-1)
    )


@pytest.mark.parametrize(
    ("layers", "message"),
    [
        (
            [{"conv": 8, "kernel": 3, "stride": 2}] * 3 + [{"conv": 8, "kernel": 3}],
            "model.layers[3]: input 2x2, kernel 3, padding 0: no output pixel",
        ),
        (
            [{"pool": "max", "kernel": 30}],
            "model.layers[0]: input 28x28, kernel 30, padding 0: no output pixel",
        ),
        (
            [{"conv": 4, "kernel": 3}, {"pool": "avg", "kernel": 3, "padding": 2}],
            "model.layers[1]: pool padding 2 is more than half the kernel 3",
        ),
        ([{"conv": 0, "kernel": 3}], "model.layers[0]: conv 0: a layer needs at least 1 channel"),
    ],
)
def test_bad_architectures_fail_in_one_line_naming_the_layer(layers, message):
    with pytest.raises(ArchitectureError) as caught:
        build({"layers": layers, "hidden": [10]}, (1, 28, 28), 10)
    assert str(caught.value) == message
    assert isinstance(caught.value, UserError)
    with pytest.raises(ArchitectureError, match=r"^model\.hidden\[1\]: 0: a layer needs"):
        build({"layers": [{"conv": 1, "kernel": 1}], "hidden": [5, 0]}, (1, 28, 28), 10)


def test_from_config_takes_the_dataset_image_size_and_classes():
    config = {"dataset": {"image_size": [32, 30], "classes": 3}, "model": LENET5}
    architecture = from_config(config)
    assert architecture.input_shape == (1, 32, 30)
    assert architecture.layers[-1].out_shape == (3,)
    assert architecture.feature_shape == (16, 6, 5)
