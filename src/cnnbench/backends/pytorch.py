"""The reference: the PyTorch model, eager mode under ``torch.inference_mode``."""

from __future__ import annotations

import numpy as np
import torch

from cnnbench.backends import Backend
from cnnbench.network.torch_model import model_from_weights


class TorchBackend(Backend):
    name = "torch"

    def __init__(self, arrays: dict[str, np.ndarray]) -> None:
        self.model = model_from_weights(arrays)

    def _forward(self, x: np.ndarray) -> np.ndarray:
        with torch.inference_mode():
            return self.model(torch.from_numpy(x)).numpy()
