"""The seed notebook's worked example: a 4×4 image with two channels, two 2×2 kernels, stride 2.

The report computes it live with ``cnnbench.ops``; PyTorch's answer comes from the pipeline step
``cnnbench.steps.worked_example``, since the report itself never runs torch.
"""

from __future__ import annotations

import numpy as np

STRIDE = 2
PADDING = 0
# Two 4×4 channels 1..16 and 17..32, two output channels of all-ones 2×2 kernels over both input
# channels, bias 1 and 2. Each output is the sum of a 2×2 window in both channels plus the bias,
# e.g. (1+2+5+6) + (17+18+21+22) + 1 = 93.
EXPECTED = np.array([[[[93, 109], [157, 173]], [[94, 110], [158, 174]]]], dtype=np.float64)


def example_inputs() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    x = np.arange(1, 33, dtype=np.float64).reshape(1, 2, 4, 4)
    w = np.ones((2, 2, 2, 2), dtype=np.float64)
    b = np.array([1.0, 2.0])
    return x, w, b
