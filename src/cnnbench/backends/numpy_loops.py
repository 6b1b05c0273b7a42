"""numpy_loops: ``cnnbench.ops``'s loop network, every multiply-add a Python scalar operation."""

from __future__ import annotations

import numpy as np

from cnnbench.backends import Backend
from cnnbench.ops import Network


class NumpyLoopsBackend(Backend):
    name = "numpy_loops"

    def __init__(self, arrays: dict[str, np.ndarray]) -> None:
        self.network = Network(arrays, variant="loops", dtype=np.float32)

    def _forward(self, x: np.ndarray) -> np.ndarray:
        return self.network.logits(x)
