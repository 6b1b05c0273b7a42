"""numpy_im2col: ``cnnbench.ops``'s im2col network in its inference-tuned form."""

from __future__ import annotations

import numpy as np

from cnnbench.backends import Backend, Stage
from cnnbench.network.architecture import Architecture
from cnnbench.ops import Im2colInference


class NumpyIm2colBackend(Backend):
    name = "numpy_im2col"

    def __init__(self, arrays: dict[str, np.ndarray], architecture: Architecture) -> None:
        self.network = Im2colInference(arrays, architecture)
        super().__init__(arrays, architecture)

    def _forward(self, x: np.ndarray) -> np.ndarray:
        return self.network.logits(x)

    def _stages(self) -> list[tuple[str, Stage]]:
        return self.network.stages()
