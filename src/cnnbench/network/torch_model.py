"""The reference network in PyTorch, built from the same architecture constants as every backend."""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from cnnbench.common.errors import UserError
from cnnbench.network.architecture import CONV_LAYERS, CONV_PADDING, CONV_STRIDE, PARAMETER_SHAPES
from cnnbench.network.weights import check_parameters


class SimpleCNN(nn.Module):
    """The seed notebook's network: 3 x (conv 3x3 stride 2 pad 1 + ReLU), fc 2048->250 + ReLU, fc 250->10."""

    def __init__(self) -> None:
        super().__init__()
        for name in CONV_LAYERS:
            out_channels, in_channels, kh, kw = PARAMETER_SHAPES[f"{name}.weight"]
            setattr(
                self,
                name,
                nn.Conv2d(
                    in_channels, out_channels, (kh, kw), stride=CONV_STRIDE, padding=CONV_PADDING
                ),
            )
        self.fc1 = nn.Linear(*reversed(PARAMETER_SHAPES["fc1.weight"]))
        self.fc2 = nn.Linear(*reversed(PARAMETER_SHAPES["fc2.weight"]))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for name in CONV_LAYERS:
            x = torch.relu(getattr(self, name)(x))
        x = torch.relu(self.fc1(torch.flatten(x, 1)))
        return self.fc2(x)


def model_from_weights(
    arrays: dict[str, np.ndarray], dtype: torch.dtype = torch.float32
) -> SimpleCNN:
    """A SimpleCNN holding exactly ``arrays`` (e.g. from ``cnnbench.network.weights.load_weights``)."""
    check_parameters(arrays, source="weights")
    model = SimpleCNN()
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
