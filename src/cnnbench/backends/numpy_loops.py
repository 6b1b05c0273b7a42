"""numpy_loops: ``cnnbench.ops``'s loop network, every multiply-add a Python scalar operation."""

from __future__ import annotations

import numpy as np

from cnnbench.backends import Backend, Stage
from cnnbench.network.architecture import Architecture
from cnnbench.ops import Network


class NumpyLoopsBackend(Backend):
    name = "numpy_loops"

    def __init__(self, arrays: dict[str, np.ndarray], architecture: Architecture) -> None:
        self.network = Network(arrays, architecture, variant="loops", dtype=np.float32)
        super().__init__(arrays, architecture)

    def _forward(self, x: np.ndarray) -> np.ndarray:
        return self.network.logits(x)

    def _stages(self) -> list[tuple[str, Stage]]:
        return self.network.stages()
