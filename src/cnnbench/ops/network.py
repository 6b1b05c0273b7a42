"""The whole network in NumPy: forward (keeping what backward needs) and backward.

Built from the exported weights (``cnnbench.network.weights.load_weights``), with either variant:
``loops`` (scalar-loop convolution and linear layers) or ``im2col`` (im2col convolution and
matmul linear layers).  ReLU and the loss are shared: they are elementwise either way.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from cnnbench.network.architecture import (
    CONV_LAYERS,
    CONV_PADDING,
    CONV_STRIDE,
    LINEAR_LAYERS,
    PARAMETER_SHAPES,
)
from cnnbench.network.weights import check_parameters, load_weights
from cnnbench.ops.im2col import conv2d_backward_im2col, conv2d_im2col
from cnnbench.ops.layers import linear, linear_backward, relu, relu_backward
from cnnbench.ops.loops import (
    conv2d_backward_loops,
    conv2d_loops,
    linear_backward_loops,
    linear_loops,
)
from cnnbench.ops.losses import cross_entropy, cross_entropy_backward

INPUT_GRADIENT = "input"  # key of dLoss/dx among the gradients, beside the parameter names


@dataclass(frozen=True)
class Variant:
    """The layer functions one implementation of the network is built from."""

    name: str
    conv2d: Callable[..., np.ndarray]
    conv2d_backward: Callable[..., tuple[np.ndarray, np.ndarray, np.ndarray]]
    linear: Callable[..., np.ndarray]
    linear_backward: Callable[..., tuple[np.ndarray, np.ndarray, np.ndarray]]


VARIANTS: dict[str, Variant] = {
    "loops": Variant(
        "loops", conv2d_loops, conv2d_backward_loops, linear_loops, linear_backward_loops
    ),
    "im2col": Variant("im2col", conv2d_im2col, conv2d_backward_im2col, linear, linear_backward),
}


@dataclass
class ForwardCache:
    """What backward needs: each layer's input, and each ReLU layer's input (pre-activation)."""

    inputs: dict[str, np.ndarray] = field(default_factory=dict)
    preactivations: dict[str, np.ndarray] = field(default_factory=dict)


class Network:
    """conv1-3 (kernel 3, stride 2, padding 1) + ReLU, flatten, fc1 + ReLU, fc2, in NumPy.

    ``arrays``: the dict from ``load_weights`` (float32, PyTorch layouts); the parameters are
    cast once to ``dtype``, and inputs must have that dtype.
    """

    def __init__(
        self,
        arrays: dict[str, np.ndarray],
        variant: str = "im2col",
        dtype: type[np.floating] | np.dtype = np.float32,
    ) -> None:
        check_parameters(arrays, source="network weights")
        if variant not in VARIANTS:
            raise ValueError(f"variant must be one of {sorted(VARIANTS)}, got {variant!r}")
        self.variant = VARIANTS[variant]
        self.dtype = np.dtype(dtype)
        self.parameters = {
            name: np.asarray(arrays[name], dtype=self.dtype) for name in PARAMETER_SHAPES
        }

    @classmethod
    def from_file(
        cls,
        path: str | Path,
        variant: str = "im2col",
        dtype: type[np.floating] | np.dtype = np.float32,
    ) -> Network:
        """The network with the weights of an exported ``weights.npz``."""
        return cls(load_weights(path), variant, dtype)

    def forward(self, x: np.ndarray) -> tuple[np.ndarray, ForwardCache]:
        """Logits (N, 10) of images ``x`` (N, 1, 28, 28), and the cache for :meth:`backward`."""
        cache = ForwardCache()
        h = x
        for layer in CONV_LAYERS:
            cache.inputs[layer] = h
            z = self.variant.conv2d(
                h,
                self.parameters[f"{layer}.weight"],
                self.parameters[f"{layer}.bias"],
                CONV_STRIDE,
                CONV_PADDING,
            )
            cache.preactivations[layer] = z
            h = relu(z)
        h = h.reshape(h.shape[0], -1)
        for position, layer in enumerate(LINEAR_LAYERS):
            cache.inputs[layer] = h
            h = self.variant.linear(
                h, self.parameters[f"{layer}.weight"], self.parameters[f"{layer}.bias"]
            )
            if position < len(LINEAR_LAYERS) - 1:  # the last layer's outputs are the logits
                cache.preactivations[layer] = h
                h = relu(h)
        return h, cache

    def logits(self, x: np.ndarray) -> np.ndarray:
        """Logits (N, 10) of images ``x`` (N, 1, 28, 28)."""
        return self.forward(x)[0]

    def backward(self, cache: ForwardCache, dlogits: np.ndarray) -> dict[str, np.ndarray]:
        """dLoss/d(every parameter) by name, and dLoss/dx under ``"input"``, given dLoss/dlogits."""
        grads: dict[str, np.ndarray] = {}
        d = dlogits
        for layer in reversed(LINEAR_LAYERS):
            if layer in cache.preactivations:
                d = relu_backward(d, cache.preactivations[layer])
            d, grads[f"{layer}.weight"], grads[f"{layer}.bias"] = self.variant.linear_backward(
                d, cache.inputs[layer], self.parameters[f"{layer}.weight"]
            )
        d = d.reshape(cache.preactivations[CONV_LAYERS[-1]].shape)
        for layer in reversed(CONV_LAYERS):
            d = relu_backward(d, cache.preactivations[layer])
            d, grads[f"{layer}.weight"], grads[f"{layer}.bias"] = self.variant.conv2d_backward(
                d,
                cache.inputs[layer],
                self.parameters[f"{layer}.weight"],
                CONV_STRIDE,
                CONV_PADDING,
            )
        grads[INPUT_GRADIENT] = d
        return {name: grads[name] for name in (*PARAMETER_SHAPES, INPUT_GRADIENT)}

    def loss_and_gradients(
        self, x: np.ndarray, labels: np.ndarray
    ) -> tuple[np.floating, dict[str, np.ndarray]]:
        """Mean cross-entropy of ``x`` against ``labels``, and its gradients (see :meth:`backward`)."""
        logits, cache = self.forward(x)
        return cross_entropy(logits, labels), self.backward(
            cache, cross_entropy_backward(logits, labels)
        )
