"""The reference: the PyTorch model, eager mode under ``torch.inference_mode``."""

from __future__ import annotations

from functools import partial

import numpy as np
import torch

from cnnbench.backends import Backend, Stage
from cnnbench.network.architecture import Architecture, Layer
from cnnbench.network.torch_model import model_from_weights


class TorchBackend(Backend):
    name = "torch"

    def __init__(self, arrays: dict[str, np.ndarray], architecture: Architecture) -> None:
        self.model = model_from_weights(arrays, architecture)
        super().__init__(arrays, architecture)

    def _forward(self, x: np.ndarray) -> np.ndarray:
        with torch.inference_mode():
            return self.model(torch.from_numpy(x)).numpy()

    def _stages(self) -> list[tuple[str, Stage]]:
        return [
            (layer.name, partial(self._layer_forward, layer)) for layer in self.architecture.layers
        ]

    def _layer_forward(self, layer: Layer, x: np.ndarray) -> np.ndarray:
        with torch.inference_mode():
            return self.model.layer_forward(layer, torch.from_numpy(x)).numpy()
