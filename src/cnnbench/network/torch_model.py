"""The reference network in PyTorch, built from the architecture value like every backend."""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from cnnbench.common.errors import UserError
from cnnbench.network.architecture import AVGPOOL, CONV, LINEAR, MAXPOOL, Architecture, Layer
from cnnbench.network.weights import check_parameters


def _module(layer) -> nn.Module:
    if layer.kind == CONV:
        return nn.Conv2d(
            layer.in_shape[0],
            layer.out_shape[0],
            layer.kernel,
            stride=layer.stride,
            padding=layer.padding,
        )
    if layer.kind == MAXPOOL:
        return nn.MaxPool2d(layer.kernel, stride=layer.stride, padding=layer.padding)
    if layer.kind == AVGPOOL:  # count_include_pad=True, PyTorch's default, as the config says
        return nn.AvgPool2d(layer.kernel, stride=layer.stride, padding=layer.padding)
    if layer.kind == LINEAR:
        return nn.Linear(layer.in_shape[0], layer.out_shape[0])
    raise ValueError(f"unknown layer kind {layer.kind!r}")


class Net(nn.Module):
    """The network ``architecture`` describes, one attribute per layer (its name), created in
    layer order: parameters are drawn from torch's seeded generator in that order, and the
    state_dict keys are the architecture's parameter names."""

    def __init__(self, architecture: Architecture) -> None:
        super().__init__()
        self.architecture = architecture
        for layer in architecture.layers:
            setattr(self, layer.name, _module(layer))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for layer in self.architecture.layers:
            x = self.layer_forward(layer, x)
        return x

    def layer_forward(self, layer: Layer, x: torch.Tensor) -> torch.Tensor:
        """One layer, its ReLU included; the first linear layer flattens its input first."""
        if layer.kind == LINEAR and x.dim() > 2:
            x = torch.flatten(x, 1)
        x = getattr(self, layer.name)(x)
        return torch.relu(x) if layer.relu else x


def model_from_weights(
    arrays: dict[str, np.ndarray], architecture: Architecture, dtype: torch.dtype = torch.float32
) -> Net:
    """The network holding exactly ``arrays`` (e.g. from ``cnnbench.network.weights.load_weights``)."""
    check_parameters(arrays, architecture, source="weights")
    model = Net(architecture)
    model.load_state_dict(
        {name: torch.from_numpy(np.array(value)) for name, value in arrays.items()}
    )
    return model.to(dtype).eval()


def pick_device(requested: str) -> torch.device:
    """``auto`` means CUDA when present, else CPU; asking for CUDA without one is an error."""
    if requested == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if requested == "cuda" and not torch.cuda.is_available():
        raise UserError(
            "train.device is 'cuda' but torch finds no CUDA device here; set train.device to "
            "auto or cpu"
        )
    return torch.device(requested)
