"""Random architectures for the tests: 1-5 conv and pooling layers (kernels 1-7, strides 1-3,
padding 0-3 (conv padding below the kernel, pool padding at most half of it), max pools with and without overlap, average
pools), 1-64 channels, 0-2 hidden layers, odd and even widths, square and oblong inputs; kept
small enough (multiply-adds per image) to run through every backend in a test."""

from __future__ import annotations

import numpy as np

from cnnbench.network.architecture import Architecture, ArchitectureError, build

CHANNELS = [1, 2, 3, 4, 5, 6, 7, 8, 12, 16, 32, 64]
MAX_MACS = 2_000_000


def _layer(rng: np.random.Generator) -> dict:
    kernel = int(rng.integers(1, 8))
    stride = int(rng.integers(1, 4))
    if rng.random() < 0.6:
        return {
            "conv": int(rng.choice(CHANNELS)),
            "kernel": kernel,
            "stride": stride,
            # below the kernel: every output window touches the image (padding 3 from kernel 4)
            "padding": int(rng.integers(0, min(3, kernel - 1) + 1)),
        }
    kind = "max" if rng.random() < 0.6 else "avg"
    # max pools both overlapping (stride < kernel) and not; padding at most half the kernel
    return {
        "pool": kind,
        "kernel": kernel,
        "stride": stride,
        "padding": int(rng.integers(0, kernel // 2 + 1)),
    }


def random_architecture(seed: int) -> Architecture:
    """A valid architecture drawn from ``seed`` (redrawn until it builds and is small enough)."""
    rng = np.random.default_rng(seed)
    while True:
        model = {
            "layers": [_layer(rng) for _ in range(rng.integers(1, 6))],
            "hidden": [int(rng.integers(1, 40)) for _ in range(rng.integers(0, 3))],
        }
        input_shape = (1, int(rng.integers(8, 33)), int(rng.integers(8, 33)))
        try:
            architecture = build(model, input_shape, int(rng.integers(2, 12)))
        except ArchitectureError:
            continue
        if architecture.macs <= MAX_MACS:
            return architecture


def random_weights(architecture: Architecture, seed: int) -> dict[str, np.ndarray]:
    """float32 weights that keep a signal through every ReLU: He-scaled normal weights
    (variance 2 / fan-in), small positive biases."""
    rng = np.random.default_rng(seed)
    arrays = {}
    for name, shape in architecture.parameter_shapes.items():
        if name.endswith(".weight"):
            values = rng.standard_normal(shape) * np.sqrt(2 / np.prod(shape[1:]))
        else:
            values = rng.uniform(0, 0.1, shape)
        arrays[name] = values.astype(np.float32)
    return arrays
